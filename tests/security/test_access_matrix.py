"""The access matrix, enumerated from the app's own OpenAPI document (an endpoint added later is
covered without touching this file):

* every operation that declares ``security`` answers 401 ``{"message"}`` to no token, malformed
  tokens, unknown tokens, expired tokens and revoked tokens (session and app kinds), and leaves
  every row of every table as it was;
* every write operation (anything but GET) answers a VIEWER of the workspace 403, again with no
  row changed, except the few listed in ``VIEWER_ALLOWED`` with their reason;
* both WebSocket channels refuse bad tokens (4401) and members of another workspace (4404);
* another member reaches neither someone's private workflow nor its executions (404, 4404).

Another workspace's member on every id-taking HTTP operation (404) is
tests/api/test_isolation.py. Rows are written directly: 401/403/404 come before any work, so
no worker runs."""
from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from athena.auth import APP_HEADER
from athena.extensions import db
from athena.models import WorkflowExecution
from tests.api.helpers import (
    WorkspaceScene, call_operation, changed_tables, expired_token, fill_path, operations, revoked_token, snapshot,
    workspace_scene,
)
from tests.factories import PASSWORD, headers_for, token_for
from tests.realtime.support import Reader, execution_url, workspace_url

# Operations without ``security`` in the document: public by design, with the reason.
PUBLIC = {("POST", "/api/v1/auth/sign-in"): "exchanges an email and password for a token"}
# Write operations a viewer may call: (expected status, the only tables it may change, reason).
VIEWER_ALLOWED: dict[tuple[str, str], tuple[int, set[str], str]] = {
    ("POST", "/api/v1/auth/sign-in"): (200, {"api_tokens"}, "anyone signs in with their own password"),
    ("POST", "/api/v1/auth/logout"): (200, {"api_tokens"}, "revokes the caller's own token"),
    ("POST", "/api/v1/workspaces"): (201, {"workspaces", "workspace_members"},
                                     "creates a new workspace the caller owns; nothing of this one"),
    ("POST", "/api/v1/workflows/{uuid}/favorite"): (200, {"workflow_favorites"}, "a per-user bookmark"),
    ("DELETE", "/api/v1/workflows/{uuid}/favorite"): (200, {"workflow_favorites"}, "a per-user bookmark"),
}
# Operations the matrix must have reached (the document really was enumerated).
EXPECTED_WRITES = {
    "POST /api/v1/workflow-executions", "POST /api/v1/workflows/{uuid}/webhook",
    "POST /api/v1/workflow-executions/{uuid}/stop", "POST /api/v1/workflow-executions/{uuid}/retry",
    "POST /api/v1/workflow-executions/{uuid}/approvals/{approval_id}/approve",
    "POST /api/v1/workflow-executions/{uuid}/approvals/{approval_id}/reject",
    "POST /api/v1/workflows", "PUT /api/v1/workflows/{uuid}", "DELETE /api/v1/workflows/{uuid}",
    "PUT /api/v1/workspaces/{uuid}", "DELETE /api/v1/workspaces/{uuid}", "POST /api/v1/workspaces/{uuid}/members",
    "PUT /api/v1/workspaces/{uuid}/members/{user_uuid}", "DELETE /api/v1/workspaces/{uuid}/members/{user_uuid}",
    "POST /api/v1/workflows/generate", "PUT /api/v1/workflow-executions/{uuid}",
    "PATCH /api/v1/workflow-executions/{uuid}", "DELETE /api/v1/workflow-executions/{uuid}",
    "POST /api/v1/providers", "PUT /api/v1/providers/{uuid}", "DELETE /api/v1/providers/{uuid}",
    "POST /api/v1/accounts", "PUT /api/v1/accounts/{uuid}", "DELETE /api/v1/accounts/{uuid}",
    "POST /api/v1/accounts/{uuid}/sync-models",
}


def _is_json_error(response, status: int) -> bool:
    body = response.get_json(silent=True)
    return (response.status_code == status and isinstance(body, dict) and isinstance(body.get("message"), str)
            and bool(body["message"]) and set(body) <= {"message", "errors"})


def _bad_credentials(kind: str, scene: WorkspaceScene) -> list[dict[str, str]]:
    """Header sets presenting ``kind`` of bad credentials (of the owner, where a user is involved:
    a 401 there cannot be a missing role in disguise)."""
    user = scene.owner
    if kind == "none":
        return [{}]
    if kind == "malformed":
        return [{"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                {"Authorization": "Bearer " + "a" * 600}, {"Authorization": "Bearer aths_ x y"},
                {APP_HEADER: "not a token"}]
    if kind == "wrong":
        return [{"Authorization": f"Bearer aths_{secrets.token_urlsafe(32)}"},
                {APP_HEADER: f"atha_{secrets.token_urlsafe(32)}"}]
    make: Callable[..., str] = expired_token if kind == "expired" else revoked_token
    return [{"Authorization": f"Bearer {make(user)}"}, {APP_HEADER: make(user, "app")},
            {APP_HEADER: f"Bearer {make(user, 'app')}"}]


def test_only_the_documented_public_operations_lack_security(client):
    spec = client.get("/api/v1/openapi.json").json
    public = {(method, path) for method, path, operation in operations(spec) if not operation.get("security")}
    assert public == set(PUBLIC)


@pytest.mark.parametrize("kind", ["none", "malformed", "wrong", "expired", "revoked"])
def test_every_secured_operation_is_401_without_valid_credentials(client, kind):
    scene = workspace_scene()
    spec = client.get("/api/v1/openapi.json").json
    variants = _bad_credentials(kind, scene)
    probed, problems, before = [], [], snapshot()
    for method, path, operation in operations(spec):
        if not operation.get("security"):
            continue
        probed.append(f"{method} {path}")
        for headers in variants:
            response, url, body = call_operation(client, scene, spec, method, path, operation, headers)
            if not _is_json_error(response, 401):
                problems.append(f"{method} {url} {headers} body={body!r} -> {response.status_code} "
                                f"{response.get_data(as_text=True)[:200]}")
        changed = changed_tables(before)  # once per operation (all its variants): snapshots are slow
        if changed:
            problems.append(f"{method} {path} changed rows in {changed}")
            before = snapshot()  # the next operation is judged on its own
    assert EXPECTED_WRITES | {"GET /api/v1/user", "GET /api/v1/workflow-executions/{uuid}"} <= set(probed)
    assert not problems, "\n".join(problems)
    # the same owner's valid token is accepted (so the 401s were the credentials' doing)
    assert client.get("/api/v1/user", headers=headers_for(scene.owner)).status_code == 200


def test_a_viewer_cannot_write(client):
    scene = workspace_scene()
    spec = client.get("/api/v1/openapi.json").json
    probed, problems = [], []
    for method, path, operation in operations(spec):
        if method == "GET":
            continue
        probed.append(f"{method} {path}")
        headers = headers_for(scene.viewer)  # fresh: logout revokes the one it is called with
        before = snapshot()
        if (method, path) == ("POST", "/api/v1/auth/sign-in"):
            url, body = path, {"email": scene.viewer.email, "password": PASSWORD}
            response = client.post(url, json=body)
        else:
            response, url, body = call_operation(client, scene, spec, method, path, operation, headers)
        changed = changed_tables(before)
        where = f"{method} {url} body={body!r} -> {response.status_code} {response.get_data(as_text=True)[:200]}"
        if (method, path) in VIEWER_ALLOWED:
            status, tables, _reason = VIEWER_ALLOWED[(method, path)]
            if response.status_code != status or not set(changed) <= tables:
                problems.append(f"{where}; changed {changed}, allowed {sorted(tables)}")
        elif not _is_json_error(response, 403) or response.json["message"] != "This action is unauthorized.":
            problems.append(where)
        elif changed:
            problems.append(f"{where}; changed rows in {changed}")
    assert EXPECTED_WRITES | set(f"{m} {p}" for m, p in VIEWER_ALLOWED) <= set(probed)
    assert not problems, "\n".join(problems)

    # the viewer does reach every object it was refused on: each id-taking GET answers 200
    headers = headers_for(scene.viewer)
    for method, path, _operation in operations(spec):
        if method == "GET" and "{" in path:
            for status in scene.executions:
                url = fill_path(path, scene.objects(status))
                assert client.get(url, headers=headers).status_code == 200, url
    # and nothing was stopped, retried, decided or deleted behind the 403s
    db.session.expire_all()
    statuses = {e.status for e in db.session.execute(db.select(WorkflowExecution)).scalars()}
    assert statuses == set(scene.executions) and scene.approval.status == "pending"


def _refused(url: str, code: int) -> str | None:
    reader = Reader(url).start()
    try:
        reader.wait(lambda: reader.messages or reader.done.is_set(), "the first message")
        if not reader.messages or reader.messages[0].get("event") == "error":
            reader.finish()  # a refusal is followed by the close frame
    finally:
        reader.close(abrupt=True)  # let in by mistake: don't wait for the relay to end
    expected = [{"event": "error", "code": code, "message": reader.close_reason}]
    if reader.close_code != code or reader.messages != expected:
        return f"{url.split('?')[0]}: {reader.close_code} {reader.messages}"
    return None


@pytest.mark.parametrize("channel", ["execution", "workspace"])
def test_websocket_channels_refuse_bad_tokens_and_outsiders(live_server, channel):
    scene = workspace_scene()
    running = scene.executions["running"].uuid
    if channel == "execution":
        url = lambda **q: execution_url(live_server.ws_url, running, **q)  # noqa: E731
    else:
        url = lambda **q: workspace_url(live_server.ws_url, scene.workspace.uuid, **q)  # noqa: E731
    cases = [
        (url(), 4401),
        (url(token="aths_ not a token"), 4401),
        (url(token=f"aths_{secrets.token_urlsafe(32)}"), 4401),
        (url(token=expired_token(scene.viewer)), 4401),
        (url(token=revoked_token(scene.viewer)), 4401),
        (url(token=expired_token(scene.owner, "app")), 4401),
        (url(token=token_for(scene.outsider)), 4404),
        (url(token=token_for(scene.outsider, "app")), 4404),
    ]
    problems = [problem for target, code in cases if (problem := _refused(target, code))]
    assert not problems, "\n".join(problems)

    # a viewer of the workspace is let in (so the refusals were about the token, not the URL)
    reader = Reader(url(token=token_for(scene.viewer))).start()
    try:
        assert reader.snapshot["event"] == "snapshot"
    finally:
        reader.close(abrupt=True)


def test_someone_elses_private_workflow_and_its_executions_are_404(client, live_server):
    """Another member, an editor even, reaches neither a private workflow nor its executions and
    approvals (reading one with ``with=workflow`` would show the private graph; retrying it would
    run it): every id-taking operation under /workflows and /workflow-executions is a 404."""
    scene = workspace_scene(visibility="private")
    spec = client.get("/api/v1/openapi.json").json
    editor, problems, probed, before = headers_for(scene.editor), [], [], snapshot()
    for method, path, operation in operations(spec):
        if not path.startswith(("/api/v1/workflows/{", "/api/v1/workflow-executions/{")):
            continue
        probed.append(f"{method} {path}")
        response, url, body = call_operation(client, scene, spec, method, path, operation, editor)
        if not _is_json_error(response, 404):
            problems.append(f"{method} {url} body={body!r} -> {response.status_code} "
                            f"{response.get_data(as_text=True)[:200]}")
        changed = changed_tables(before)
        if changed:
            problems.append(f"{method} {url} changed rows in {changed}")
            before = snapshot()
    assert {"GET /api/v1/workflow-executions/{uuid}", "POST /api/v1/workflow-executions/{uuid}/retry",
            "GET /api/v1/workflow-executions/{uuid}/approvals", "PUT /api/v1/workflows/{uuid}"} <= set(probed)
    assert not problems, "\n".join(problems)
    # the lists and the count leave them out too, and the execution channel refuses them
    scope = {"workspace_uuid": scene.workspace.uuid}
    listed = client.get("/api/v1/workflow-executions", query_string=scope, headers=editor)
    counted = client.get("/api/v1/workflow-executions/count", headers=editor,
                         query_string={**scope, "start_date": "2000-01-01", "end_date": "2999-12-31"})
    assert (listed.json["meta"]["total"], counted.json["data"]["count"]) == (0, 0)
    paused = scene.executions["paused"].uuid
    assert _refused(execution_url(live_server.ws_url, paused, token=token_for(scene.editor)), 4404) is None
    # while the workflow's owner sees them all
    owner = headers_for(scene.owner)
    listed = client.get("/api/v1/workflow-executions", query_string=scope, headers=owner)
    assert listed.json["meta"]["total"] == len(scene.executions)
    assert client.get(f"/api/v1/workflow-executions/{paused}/approvals", headers=owner).status_code == 200
