"""Property-based API test: schemathesis generates requests from the app's own OpenAPI document
(in-process over WSGI) and checks that no response is a 5xx and that every response matches
its documented status code, content type and schema.

Every operation runs inside ONE pytest test, so the data made by the ``world`` fixture lives
until the end (the conftest cleans the tables after each test). We drive Hypothesis ourselves
from ``operation.as_strategy()``: schemathesis' ``from_fixture``/lazy ``parametrize`` writes
``request.node._nodeid``, which pytest 9.2 no longer has. Generated path uuids are swapped for
real ones about half the time (so success paths and their response schemas are exercised too)
and ``_restore`` undoes what a case may have destroyed (soft deletes, a revoked token, a
changed role) before the next case runs."""
from __future__ import annotations

import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from athena.extensions import db
from athena.models import ApiToken, Workflow, Workspace, WorkspaceMember
from tests.factories import make_user, make_workflow, make_workspace, token_for

STATS = {}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def world(app):
    owner = make_user()
    editor = make_user()
    workspace = make_workspace(owner, "Fuzzed", members={editor: "editor"})
    workflow = make_workflow(workspace, owner, name="Fuzzed flow")
    return {
        "token": token_for(owner),
        "owner": owner.uuid,
        "editor": editor.uuid,
        "workspace": workspace.uuid,
        "workflow": workflow.uuid,
        "roles": {owner.id: "owner", editor.id: "editor"},
    }


def _coin(value: object) -> bool:
    """A deterministic (Hypothesis replays must be stable) fair coin derived from generated data."""
    return zlib.crc32(repr(value).encode()) % 2 == 0


def _real_uuids(case, world) -> None:
    params = case.path_parameters or {}
    if "uuid" in params and _coin(params["uuid"]):
        kind = "workflow" if case.path.startswith("/api/v1/workflows/") else "workspace"
        params["uuid"] = world[kind]
    if "user_uuid" in params and _coin(params["user_uuid"]):
        params["user_uuid"] = world["editor" if _coin(f"{params['user_uuid']}!") else "owner"]
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("workspace_uuid"), str) and _coin(body):
        body["workspace_uuid"] = world["workspace"]


def _restore(world) -> None:
    db.session.rollback()
    db.session.execute(db.update(Workspace).values(deleted_at=None))
    db.session.execute(db.update(Workflow).where(Workflow.uuid == world["workflow"]).values(deleted_at=None))
    db.session.execute(db.update(ApiToken).values(revoked_at=None))
    for user_id, role in world["roles"].items():
        db.session.execute(db.update(WorkspaceMember).where(WorkspaceMember.user_id == user_id).values(role=role))
    db.session.commit()
    db.session.expire_all()


def test_api_conforms_to_its_openapi_document(app, world):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {world['token']}"}
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # raises if the document itself is invalid
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @HYPOTHESIS
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                _real_uuids(case, world)
                try:
                    r = case.call_and_validate(headers=headers, checks=CHECKS); STATS.setdefault(operation.label, {}).setdefault(r.status_code, 0); STATS[operation.label][r.status_code] += 1
                finally:
                    _restore(world)

            try:
                run()
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report
                failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"
    import pprint; pprint.pprint(STATS)
    assert operations >= 15
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
