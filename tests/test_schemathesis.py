"""Property-based API test: schemathesis generates requests from the app's own OpenAPI document
(in-process over WSGI) and checks that no response is a 5xx and that every response matches
its documented status code, content type and schema.

Every operation runs inside ONE pytest test, so the data made by the ``world`` fixture lives
until the end (the conftest cleans the tables after each test). We drive Hypothesis ourselves
from ``operation.as_strategy()``: schemathesis' ``from_fixture``/lazy ``parametrize`` writes
``request.node._nodeid``, which pytest 9.2 no longer has. Generated path uuids are swapped for
real ones about half the time (so success paths and their response schemas are exercised too)
and ``_restore`` undoes what a case may have changed (soft deletes, a revoked token, a changed
role, a stopped execution, a decided approval) before the next case runs."""
from __future__ import annotations

import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from athena.extensions import db
from athena.models import ApiToken, Workflow, WorkflowApproval, WorkflowExecution, Workspace, WorkspaceMember
from athena.timeutil import utcnow
from tests.factories import make_user, make_workflow, make_workspace, token_for

# Every per-response check schemathesis has except positive_data_acceptance: a schema-valid body
# may still break a business rule (an unknown member email, a NUL character PostgreSQL cannot
# store), which the API rightly answers with 422.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection, ignored_auth,
          missing_required_header, unsupported_method, use_after_free]
# A 502/503/504 an operation documents (e.g. "the model provider is unreachable") is its contract
# with the client, not a crash: such responses get every check but not_a_server_error. 500 never.
GATEWAY_STATUSES = (502, 503, 504)
# Which object a path's first ``{uuid}`` names, by path prefix.
PREFIXES = (
    ("/api/v1/workflow-executions/", "execution"),
    ("/api/v1/workflows/", "workflow"),
    ("/api/v1/workspaces/", "workspace"),
)
# 25 examples per operation: 15 valid requests, 10 invalid ones (keeps the run well under 2 minutes).
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
HYPOTHESIS = settings(
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found, fast
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def world(app):
    owner = make_user()
    editor = make_user()
    workspace = make_workspace(owner, "Fuzzed", members={editor: "editor"})
    workflow = make_workflow(workspace, owner, name="Fuzzed flow")
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workspace.id, user_id=owner.id,
                                  status="paused", requires_human_review=True, started_at=utcnow())
    db.session.add(execution)
    db.session.flush()
    approval = WorkflowApproval(workflow_execution_id=execution.id, node_id="gate", status="pending")
    db.session.add(approval)
    db.session.commit()
    return {
        "token": token_for(owner),
        "owner": owner.uuid,
        "editor": editor.uuid,
        "workspace": workspace.uuid,
        "workflow": workflow.uuid,
        "execution": execution.uuid,
        "approval": approval.uuid,
        "roles": {owner.id: "owner", editor.id: "editor"},
    }


def _coin(value: object) -> bool:
    """A deterministic (Hypothesis replays must be stable) fair coin derived from generated data."""
    return zlib.crc32(repr(value).encode()) % 2 == 0


def _real_uuids(case, world) -> None:
    params = case.path_parameters or {}
    if "uuid" in params and _coin(params["uuid"]):
        params["uuid"] = world[next((kind for prefix, kind in PREFIXES if case.path.startswith(prefix)), "workspace")]
    if "user_uuid" in params and _coin(params["user_uuid"]):
        params["user_uuid"] = world["editor" if _coin(f"{params['user_uuid']}!") else "owner"]
    if "approval_id" in params and _coin(params["approval_id"]):
        params["approval_id"] = world["approval"]
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("workspace_uuid"), str) and _coin(body):
        body["workspace_uuid"] = world["workspace"]


def _restore(world) -> None:
    db.session.rollback()
    db.session.execute(db.update(Workspace).values(deleted_at=None))
    db.session.execute(db.update(Workflow).where(Workflow.uuid == world["workflow"]).values(deleted_at=None))
    db.session.execute(
        db.update(WorkflowExecution).where(WorkflowExecution.uuid == world["execution"])
        .values(deleted_at=None, status="paused", is_finished=False, stopped_at=None, requires_human_review=True)
    )
    db.session.execute(
        db.update(WorkflowApproval).where(WorkflowApproval.uuid == world["approval"])
        .values(status="pending", decided_by=None, decided_at=None, comment=None)
    )
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
        for mode, examples in EXAMPLES.items():

            @settings(HYPOTHESIS, max_examples=examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                _real_uuids(case, world)
                try:
                    response = case.call(headers=headers)
                    documented = operation.definition.raw.get("responses", {})
                    gateway = response.status_code in GATEWAY_STATUSES and str(response.status_code) in documented
                    checks = [check for check in CHECKS if not (gateway and check is not_a_server_error)]
                    case.validate_response(response, checks=checks, headers=headers)
                finally:
                    if case.method.upper() != "GET":
                        _restore(world)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect all, then report
                failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"
    assert operations >= 15
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
