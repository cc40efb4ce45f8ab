"""Small helpers shared by the API tests (no fixtures: those live in tests/conftest.py)."""
from __future__ import annotations

import re
import uuid as uuid_lib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import event

from athena.auth import hash_token
from athena.extensions import db
from athena.models import ApiToken, User, Workflow, WorkflowApproval, WorkflowExecution, Workspace
from athena.timeutil import iso, utcnow
from tests.factories import make_llm_objects, make_user, make_workflow, make_workspace, token_for

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def revoked_token(user, kind: str = "session") -> str:
    """A token that was valid and has been revoked."""
    clear = token_for(user, kind)
    db.session.execute(db.update(ApiToken).where(ApiToken.token_hash == hash_token(clear)).values(revoked_at=utcnow()))
    db.session.commit()
    return clear


def expired_token(user, kind: str = "session") -> str:
    """A token that was valid (never revoked) and expired a minute ago."""
    clear = token_for(user, kind)
    db.session.execute(db.update(ApiToken).where(ApiToken.token_hash == hash_token(clear))
                       .values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    return clear


def revoked_headers(user) -> dict[str, str]:
    """Headers with a token that was valid and has been revoked."""
    return {"Authorization": f"Bearer {revoked_token(user)}"}


@contextmanager
def count_statements():
    """Count the SQL statements sent to the database inside the block: ``with ... as seen: len(seen)``."""
    seen: list[str] = []

    def _record(_conn, _cursor, statement, _params, _context, _many):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", _record)


def assert_json_error(response, status: int) -> dict:
    """The response is a JSON ``{"message", "errors"?}`` error with ``status``."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.is_json, response.get_data(as_text=True)[:500]
    body = response.json
    assert isinstance(body.get("message"), str) and body["message"]
    assert set(body) <= {"message", "errors"}
    if "errors" in body:
        assert isinstance(body["errors"], dict)
    return body


# -- Enumerating the OpenAPI document (tests/api/test_isolation.py, tests/security/*) --------------
METHODS = ("get", "put", "patch", "post", "delete")
# Which object a path parameter names, by the path segment just before it...
BY_SEGMENT = {
    "workspaces": "workspace", "workflows": "workflow", "workflow-executions": "execution",
    "executions": "execution", "approvals": "approval", "members": "member", "users": "member",
    "providers": "provider", "accounts": "account", "large-language-models": "llm",
}
# ...or, failing that, by the parameter's own name.
BY_NAME = {
    "workspace_uuid": "workspace", "workflow_uuid": "workflow", "execution_uuid": "execution",
    "approval_uuid": "approval", "approval_id": "approval", "user_uuid": "member",
    "provider_uuid": "provider", "account_uuid": "account",
}
# Columns that may change on any authenticated request (bookkeeping, not data).
VOLATILE = {("api_tokens", "last_used_at")}


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    """Every ``(METHOD, path, operation)`` of the document, in document order."""
    return [(method.upper(), path, item[method]) for path, item in spec["paths"].items()
            for method in METHODS if method in item]


def fill_path(path: str, objects: dict[str, str]) -> str:
    """``path`` with each ``{param}`` replaced by the uuid of the matching kind in ``objects``
    (by the segment before it, then by its name; a random uuid when neither says)."""
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1]
            kind = BY_SEGMENT.get(segments[index - 1]) or BY_NAME.get(name)
            segments[index] = objects[kind] if kind else str(uuid_lib.uuid4())
    return "/".join(segments)


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def example(spec: dict, schema: dict, name: str, email: str) -> Any:
    """A small valid value for ``schema``: what a plausible client would send."""
    schema = resolve(spec, schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        wanted = [key for key in properties if key in schema.get("required", []) or key in ("name", "role", "comment")
                  or resolve(spec, properties[key]).get("type") == "boolean"]
        return {key: example(spec, properties[key], key, email) for key in wanted
                if not resolve(spec, properties[key]).get("readOnly")}
    if kind == "array":
        return []
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    fmt = schema.get("format")
    if fmt == "email" or name == "email":
        return email  # e.g. "add me to their workspace"
    if fmt == "date-time":
        return iso(utcnow())
    if fmt in ("uri", "url"):
        return "https://example.com/probe"
    if fmt == "uuid" or name.endswith("uuid"):
        return str(uuid_lib.uuid4())
    return "probe".ljust(schema.get("minLength", 1), "x")[: schema.get("maxLength", 255)]


def request_parts(spec: dict, operation: dict, email: str) -> tuple[dict | None, dict]:
    """A JSON body (None when the operation takes none) and the required query parameters."""
    body = None
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = example(spec, content["application/json"]["schema"], "", email)
    query = {p["name"]: example(spec, p.get("schema", {}), p["name"], email)
             for p in operation.get("parameters", []) if p.get("in") == "query" and p.get("required")}
    return body, query


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table (minus ``VOLATILE`` columns), in primary-key order. Rolls the
    shared session back first: a request that failed mid-flush leaves it needing that."""
    db.session.rollback()
    rows = {}
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
        primary = list(table.primary_key.columns) or columns
        rows[table.name] = [tuple(r) for r in db.session.execute(db.select(*columns).order_by(*primary)).all()]
    return rows


def changed_tables(before: dict[str, list[tuple]]) -> list[str]:
    """The tables whose rows differ from ``before`` (a :func:`snapshot`)."""
    return [name for name, rows in snapshot().items() if rows != before[name]]


@dataclass
class WorkspaceScene:
    """A workspace with one member per role, an outsider (member of another workspace), a
    registered non-member, a workflow and executions in the statuses the write endpoints need
    (none a worker's sweeper would pick up: no ``pending`` row, the ``running`` one leased)."""

    owner: User
    editor: User
    viewer: User
    outsider: User
    newcomer: User
    workspace: Workspace
    workflow: Workflow
    executions: dict[str, WorkflowExecution]
    approval: WorkflowApproval
    llm: dict[str, str]  # provider, account, llm: uuids of the workspace's LLM objects

    def objects(self, status: str = "paused") -> dict[str, str]:
        """Path-parameter values (see :func:`fill_path`) with the execution in ``status``."""
        return {"workspace": self.workspace.uuid, "workflow": self.workflow.uuid,
                "execution": self.executions[status].uuid, "approval": self.approval.uuid,
                "member": self.editor.uuid, **self.llm}


def workspace_scene(visibility: str = "workspace") -> WorkspaceScene:
    from athena.redis_client import get_redis
    from athena.services.leases import lease_key
    from tests.realtime.support import make_execution  # rows only; nothing of the socket machinery

    owner, editor, viewer, outsider, newcomer = (make_user() for _ in range(5))
    workspace = make_workspace(owner, "Scene", members={editor: "editor", viewer: "viewer"})
    make_workflow(make_workspace(outsider, "Elsewhere"), outsider)
    workflow = make_workflow(workspace, owner, name="Scene flow", visibility=visibility)
    executions = {status: make_execution(workflow, owner, status)
                  for status in ("running", "paused", "completed", "failed")}
    # "running" as if a worker held it: a live worker's sweeper (another test's) leaves it alone
    get_redis().set(lease_key(executions["running"].uuid), "test", ex=600)
    executions["paused"].requires_human_review = True
    approval = WorkflowApproval(workflow_execution_id=executions["paused"].id, node_id="start", status="pending",
                                message="Ship it?")
    db.session.add(approval)
    db.session.commit()
    provider, account, model = make_llm_objects(workspace, owner)
    llm = {"provider": provider.uuid, "account": account.uuid, "llm": model.uuid}
    return WorkspaceScene(owner, editor, viewer, outsider, newcomer, workspace, workflow, executions, approval, llm)


def status_for(method: str, path: str) -> str:
    """The execution status under which an operation would do its work (were it allowed)."""
    if path.endswith("/stop"):
        return "running"
    if path.endswith("/retry"):
        return "failed"
    if "/approvals" in path:
        return "paused"
    return "completed" if method == "DELETE" else "paused"


def call_operation(client, scene: WorkspaceScene, spec: dict, method: str, path: str, operation: dict,
                   headers: dict[str, str], extra: dict[str, Any] | None = None) -> tuple[Any, str, Any]:
    """The operation on the scene's real objects with a valid body built from its documented
    schema (ids in it name the scene's objects too), plus ``extra`` fields. Returns
    ``(response, url, body)``."""
    objects = scene.objects(status_for(method, path))
    body, query = request_parts(spec, operation, scene.newcomer.email)
    if isinstance(body, dict):
        body = {key: objects[BY_NAME[key]] if key in BY_NAME else value for key, value in body.items()}
        body.update(extra or {})
    url = fill_path(path, objects)
    return client.open(url, method=method, json=body, query_string=query, headers=headers), url, body
