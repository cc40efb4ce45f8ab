"""Workspace isolation, proven for every endpoint that takes an id in its path.

The endpoints come from the app's own OpenAPI document, so an endpoint added later is covered
without touching this file. Each path parameter is filled with the matching object of the
victim's workspace (by the path segment before it, then by the parameter's name; a random
uuid otherwise), a body is built from the documented request schema, and the caller is a
member of ANOTHER workspace with a valid token. Every call must answer 404 and leave every
row of every table exactly as it was."""
from __future__ import annotations

import uuid as uuid_lib

from sqlalchemy import inspect as sa_inspect

from athena.extensions import db
from athena.models import WorkflowApproval, WorkflowExecution
from athena.timeutil import iso, utcnow
from tests.factories import headers_for, make_user, make_workflow, make_workspace

METHODS = ("get", "put", "patch", "post", "delete")
# Operations that legitimately answer an outsider with something other than 404, each with
# the reason. Keep this empty unless an endpoint is public by design (e.g. a webhook that
# authenticates with a per-workflow secret instead of workspace membership).
NOT_WORKSPACE_SCOPED: dict[tuple[str, str], str] = {}
# Which victim object a path parameter names, by the path segment just before it...
BY_SEGMENT = {
    "workspaces": "workspace", "workflows": "workflow", "workflow-executions": "execution",
    "executions": "execution", "approvals": "approval", "members": "member", "users": "member",
}
# ...or, failing that, by the parameter's own name.
BY_NAME = {
    "workspace_uuid": "workspace", "workflow_uuid": "workflow", "execution_uuid": "execution",
    "approval_uuid": "approval", "approval_id": "approval", "user_uuid": "member",
}
# Columns that may change on any authenticated request (bookkeeping, not data).
VOLATILE = {("api_tokens", "last_used_at")}


def _victim() -> dict[str, str]:
    owner, editor = make_user(), make_user()
    workspace = make_workspace(owner, "Victim", members={editor: "editor"})
    workflow = make_workflow(workspace, owner, name="Victim flow", webhook_secret="v" * 32)
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workspace.id, user_id=owner.id,
                                  status="paused", requires_human_review=True, started_at=utcnow())
    db.session.add(execution)
    db.session.flush()
    approval = WorkflowApproval(workflow_execution_id=execution.id, node_id="gate", status="pending",
                                message="Ship it?")
    db.session.add(approval)
    db.session.commit()
    return {"workspace": workspace.uuid, "workflow": workflow.uuid, "execution": execution.uuid,
            "approval": approval.uuid, "member": editor.uuid}


def _fill_path(path: str, victim: dict[str, str]) -> str:
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1]
            kind = BY_SEGMENT.get(segments[index - 1]) or BY_NAME.get(name)
            segments[index] = victim[kind] if kind else str(uuid_lib.uuid4())
    return "/".join(segments)


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _example(spec: dict, schema: dict, name: str, attacker_email: str):
    """A small valid value for ``schema``: what a plausible client would send."""
    schema = _resolve(spec, schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        wanted = [key for key in properties if key in schema.get("required", []) or key in ("name", "role", "comment")
                  or _resolve(spec, properties[key]).get("type") == "boolean"]
        return {key: _example(spec, properties[key], key, attacker_email) for key in wanted
                if not _resolve(spec, properties[key]).get("readOnly")}
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
        return attacker_email  # e.g. "add me to their workspace"
    if fmt == "date-time":
        return iso(utcnow())
    if fmt in ("uri", "url"):
        return "https://example.com/probe"
    if fmt == "uuid" or name.endswith("uuid"):
        return str(uuid_lib.uuid4())
    return "probe".ljust(schema.get("minLength", 1), "x")[: schema.get("maxLength", 255)]


def _request_parts(spec: dict, operation: dict, attacker_email: str) -> tuple[dict | None, dict]:
    body = None
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = _example(spec, content["application/json"]["schema"], "", attacker_email)
    query = {p["name"]: _example(spec, p.get("schema", {}), p["name"], attacker_email)
             for p in operation.get("parameters", []) if p.get("in") == "query" and p.get("required")}
    return body, query


def _snapshot() -> dict[str, list[tuple]]:
    db.session.expire_all()
    rows = {}
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
        primary = list(table.primary_key.columns) or columns
        rows[table.name] = [tuple(r) for r in db.session.execute(db.select(*columns).order_by(*primary)).all()]
    return rows


def test_every_id_taking_endpoint_is_404_to_another_workspace(app, client):
    victim = _victim()
    attacker = make_user()
    own = make_workspace(attacker, "Attacker's own")
    make_workflow(own, attacker, name="Attacker flow")
    headers = headers_for(attacker)
    spec = client.get("/api/v1/openapi.json").json
    assert set(sa_inspect(db.engine).get_table_names()) >= {t.name for t in db.metadata.sorted_tables}

    probed, problems = [], []
    for path, item in spec["paths"].items():
        if "{" not in path:
            continue
        for method in METHODS:
            if method not in item or (method.upper(), path) in NOT_WORKSPACE_SCOPED:
                continue
            body, query = _request_parts(spec, item[method], attacker.email)
            url = _fill_path(path, victim)
            before = _snapshot()
            response = client.open(url, method=method.upper(), json=body, query_string=query, headers=headers)
            probed.append(f"{method.upper()} {path}")
            if response.status_code != 404 or not response.is_json:
                problems.append(f"{method.upper()} {url} body={body!r} -> {response.status_code} "
                                f"{response.get_data(as_text=True)[:300]}")
            changed = [name for name, rows in _snapshot().items() if rows != before[name]]
            if changed:
                problems.append(f"{method.upper()} {url} changed rows in {changed}")
    # the document really was enumerated (the Foundation endpoints at least)
    assert {"GET /api/v1/workspaces/{uuid}", "DELETE /api/v1/workspaces/{uuid}/members/{user_uuid}",
            "PUT /api/v1/workflows/{uuid}", "POST /api/v1/workflows/{uuid}/favorite"} <= set(probed)
    assert not problems, "\n".join(problems)

    # and the same calls by the victim's own editor reach the objects (so the 404s above were earned)
    editor_headers = {"Authorization": headers_for_member(victim["member"])}
    for path in ("/api/v1/workspaces/{uuid}", "/api/v1/workflows/{uuid}"):
        assert client.get(_fill_path(path, victim), headers=editor_headers).status_code == 200


def headers_for_member(user_uuid: str) -> str:
    from athena.models import User

    user = db.session.execute(db.select(User).where(User.uuid == user_uuid)).scalar_one()
    return headers_for(user)["Authorization"]
