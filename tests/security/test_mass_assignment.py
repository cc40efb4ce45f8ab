"""Mass assignment: a request body may only carry what its documented schema lists.

Every operation of the OpenAPI document that takes a JSON body (workflow, workspace, execution
and member create/update, sign-in, approve/reject, generate, and any added later) is sent a
valid body plus ONE server-owned field (``id``, ``uuid``, ``user_id``, ``workspace_id``,
``status``, ``is_admin``...). Each must be a 422 naming that field, with every row of every
table unchanged; the caller is the workspace owner, so nothing but the schema stands in the way.
The same bodies without the extra field are accepted, so the 422s are the extra field's doing."""
from __future__ import annotations

import uuid as uuid_lib
from typing import Any

from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution, Workspace, WorkspaceMember
from tests.api.helpers import (
    WorkspaceScene, call_operation, changed_tables, operations, resolve, snapshot, workspace_scene,
)
from tests.factories import PASSWORD, headers_for

SIGN_IN = ("POST", "/api/v1/auth/sign-in")
# The webhook's body is the caller's data (any JSON, form or text), not fields of a resource.
WEBHOOK = ("POST", "/api/v1/workflows/{uuid}/webhook")
# Columns (and computed fields) only the server sets: no request schema may document them.
SERVER_OWNED = {
    "id", "uuid", "user_id", "workspace_id", "workflow_id", "organization_id", "status", "is_finished",
    "created_at", "updated_at", "deleted_at", "trigger_count", "executions_count", "executions_in_progress_count",
    "is_owner", "is_favorite", "retry_success_id", "retry_of", "is_admin", "password_hash", "token_hash",
    "crash_count", "parent_execution_id", "decided_by", "decided_at", "multiplai_id", "last_used_at",
    "started_at", "stopped_at", "has_webhook_secret", "members_count", "expires_at", "revoked_at",
}
# Operations whose valid body may really be applied in the control (none of them enqueues a job).
APPLIED_IN_CONTROL = {
    SIGN_IN, ("POST", "/api/v1/workspaces"), ("PUT", "/api/v1/workspaces/{uuid}"),
    ("POST", "/api/v1/workflows"), ("PUT", "/api/v1/workflows/{uuid}"),
    ("PUT", "/api/v1/workflow-executions/{uuid}"), ("PATCH", "/api/v1/workflow-executions/{uuid}"),
    ("POST", "/api/v1/workspaces/{uuid}/members"), ("PUT", "/api/v1/workspaces/{uuid}/members/{user_uuid}"),
}


def _attacks(scene: WorkspaceScene) -> dict[str, Any]:
    """One plausible, well-typed value per field an attacker would like to set."""
    elsewhere = db.session.execute(db.select(Workspace).where(Workspace.id != scene.workspace.id)).scalar_one()
    when = "2000-01-01T00:00:00.000000Z"
    return {
        "id": 424242, "uuid": str(uuid_lib.uuid4()), "user_id": scene.outsider.id, "workspace_id": elsewhere.id,
        "workflow_id": scene.workflow.id + 1000, "organization_id": 1, "status": "completed", "is_finished": True,
        "created_at": when, "updated_at": when, "deleted_at": when, "trigger_count": 1000, "executions_count": 7,
        "is_owner": True, "is_favorite": True, "retry_success_id": str(uuid_lib.uuid4()),
        "retry_of": str(uuid_lib.uuid4()), "is_admin": True, "password_hash": "x", "crash_count": 0,
        "parent_execution_id": scene.executions["failed"].id, "decided_by": scene.outsider.id,
        "multiplai_id": "hijacked", "role": "owner", "workspace_uuid": elsewhere.uuid, "mode": "webhook",
        "email": scene.outsider.email, "webhook_secret": "s" * 32, "input": {"x": 1},
    }


def _documented(spec: dict, operation: dict) -> set[str]:
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    return set(resolve(spec, schema).get("properties", {})) if schema else set()


def _body_operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(m, p, op) for m, p, op in operations(spec)
            if "application/json" in op.get("requestBody", {}).get("content", {}) and (m, p) != WEBHOOK]


def _send(client, scene: WorkspaceScene, spec: dict, method: str, path: str, operation: dict,
          headers: dict[str, str], extra: dict[str, Any] | None = None):
    """The operation as the workspace owner (``headers``), or signing in as the owner."""
    if (method, path) == SIGN_IN:
        body = {"email": scene.owner.email, "password": PASSWORD, **(extra or {})}
        return client.post(path, json=body), path, body
    return call_operation(client, scene, spec, method, path, operation, headers, extra)


def _stored(scene: WorkspaceScene) -> dict[str, tuple]:
    """The rows the operations target, re-read from the database."""
    db.session.expire_all()
    workflow, workspace = db.session.get(Workflow, scene.workflow.id), db.session.get(Workspace, scene.workspace.id)
    rows = {"workflow": (workflow.uuid, workflow.user_id, workflow.workspace_id, workflow.trigger_count,
                         workflow.deleted_at, workflow.created_at, workflow.name),
            "workspace": (workspace.uuid, workspace.user_id, workspace.deleted_at, workspace.created_at,
                          workspace.name),
            "members": tuple(db.session.execute(db.select(WorkspaceMember.user_id, WorkspaceMember.role)
                                                .order_by(WorkspaceMember.id)).all()),
            "admins": tuple(db.session.execute(db.select(User.id).where(User.is_admin.is_(True))).scalars())}
    for status, execution in scene.executions.items():
        row = db.session.get(WorkflowExecution, execution.id)
        rows[status] = (row.uuid, row.status, row.is_finished, row.user_id, row.workspace_id, row.retry_success_id,
                        row.deleted_at, row.created_at, row.requires_human_review)
    return rows


def test_request_schemas_document_no_server_owned_field(client):
    spec = client.get("/api/v1/openapi.json").json
    leaks = {f"{m} {p}": sorted(_documented(spec, op) & SERVER_OWNED) for m, p, op in _body_operations(spec)}
    assert not {op: fields for op, fields in leaks.items() if fields}


def test_server_owned_fields_are_422_and_change_nothing(client):
    scene = workspace_scene()
    spec = client.get("/api/v1/openapi.json").json
    attacks, owner = _attacks(scene), headers_for(scene.owner)
    stored, probed, problems, before = _stored(scene), set(), [], snapshot()
    for method, path, operation in _body_operations(spec):
        probed.add((method, path))
        for field, value in attacks.items():
            if field in _documented(spec, operation):
                continue
            response, url, body = _send(client, scene, spec, method, path, operation, owner, {field: value})
            errors = (response.get_json(silent=True) or {}).get("errors") or {}
            if response.status_code != 422 or field not in errors:
                problems.append(f"{method} {url} body={body!r} -> {response.status_code} "
                                f"{response.get_data(as_text=True)[:200]}")
        changed = changed_tables(before)  # once per operation (all its fields): snapshots are slow
        if changed:
            problems.append(f"{method} {path} changed rows in {changed}")
            before = snapshot()  # the next operation is judged on its own
    assert not problems, "\n".join(problems)
    assert _stored(scene) == stored
    assert APPLIED_IN_CONTROL | {("POST", "/api/v1/workflow-executions"), ("POST", "/api/v1/workflows/generate"),
                                 ("POST", "/api/v1/workflow-executions/{uuid}/approvals/{approval_id}/approve")
                                 } <= probed


def test_the_same_bodies_without_the_extra_field_are_accepted(client):
    scene = workspace_scene()
    spec = client.get("/api/v1/openapi.json").json
    owner, problems = headers_for(scene.owner), []
    for method, path, operation in _body_operations(spec):
        if (method, path) in APPLIED_IN_CONTROL:
            response, url, body = _send(client, scene, spec, method, path, operation, owner)
            if response.status_code not in (200, 201):
                problems.append(f"{method} {url} body={body!r} -> {response.status_code} {response.get_data()[:200]!r}")
    assert not problems, "\n".join(problems)


def test_a_workflow_put_keeps_its_owner_and_workspace(client):
    scene = workspace_scene()
    url = f"/api/v1/workflows/{scene.workflow.uuid}"
    editor = headers_for(scene.editor)
    response = client.put(url, json={"name": "Renamed by the editor", "visibility": "workspace"}, headers=editor)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (response.json["data"]["user_id"], response.json["data"]["workspace_id"]) == (
        scene.owner.id, scene.workspace.id)
    attacks = _attacks(scene)
    for field in ("user_id", "workspace_id", "workspace_uuid", "uuid", "id", "is_owner", "trigger_count"):
        before = snapshot()
        response = client.put(url, json={"name": "Taken over", field: attacks[field]}, headers=editor)
        assert response.status_code == 422 and field in response.json["errors"], (field, response.json)
        assert changed_tables(before) == []
    db.session.expire_all()
    workflow = db.session.get(Workflow, scene.workflow.id)
    assert (workflow.user_id, workflow.workspace_id, workflow.name) == (
        scene.owner.id, scene.workspace.id, "Renamed by the editor")


def test_is_admin_cannot_be_set_through_any_api(client):
    scene = workspace_scene()
    spec, owner = client.get("/api/v1/openapi.json").json, headers_for(scene.owner)
    for method, path, operation in _body_operations(spec):  # JSON bodies, whatever their nesting
        for extra in ({"is_admin": True}, {"user": {"is_admin": True}}, {"isAdmin": True}):
            response, url, _body = _send(client, scene, spec, method, path, operation, owner, extra)
            assert response.status_code == 422, (method, url, extra, response.get_data(as_text=True)[:200])
    # the multipart form of generate, and query strings (ignored, never applied)
    form = {"workspace_uuid": scene.workspace.uuid, "prompt": "x", "is_admin": "true"}
    response = client.post("/api/v1/workflows/generate", data=form, headers=owner,
                           content_type="multipart/form-data")
    assert response.status_code == 422 and "is_admin" in response.json["errors"], response.json
    for url in ("/api/v1/user", f"/api/v1/workspaces/{scene.workspace.uuid}"):
        client.get(url, query_string={"is_admin": "true"}, headers=owner)
    response = client.put(f"/api/v1/workspaces/{scene.workspace.uuid}", json={"name": "Renamed"},
                          query_string={"is_admin": "true", "user_id": scene.outsider.id}, headers=owner)
    assert response.status_code == 200
    db.session.expire_all()
    assert db.session.execute(db.select(User.id).where(User.is_admin.is_(True))).all() == []
    assert client.get("/api/v1/user", headers=owner).json["data"]["is_admin"] is False
