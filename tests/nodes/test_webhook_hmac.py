"""Signed webhooks (HMAC-SHA256 with the workflow's webhook_secret) through the real worker."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid

import pytest
from sqlalchemy import text

from athena.extensions import db
from athena.models import WorkflowExecution
from tests.executions.test_webhook import hook_url, stored, trigger_entry, wait_finished, webhook_graph
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes import clean_rq

__all__ = ["clean_rq"]  # the autouse fixture

WORKFLOWS = "/api/v1/workflows"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Athena-Timestamp": stamp, "X-Athena-Signature": f"sha256={digest}",
            "Content-Type": "application/json"}


def _count() -> int:
    return db.session.execute(db.select(db.func.count()).select_from(WorkflowExecution)).scalar_one()


@pytest.fixture
def scene(client):
    owner, editor, viewer, stranger = make_user(), make_user(), make_user(), make_user()
    workspace = make_workspace(owner, members={editor: "editor", viewer: "viewer"})
    make_workspace(stranger)
    secret = secrets.token_urlsafe(24)  # 32 characters
    nodes, edges = webhook_graph()
    response = client.post(WORKFLOWS, headers=headers_for(editor), json={
        "workspace_uuid": workspace.uuid, "name": "Signed", "nodes": nodes, "edges": edges,
        "webhook_secret": secret})
    assert response.status_code == 201, response.json
    assert secret not in response.get_data(as_text=True) and response.json["data"]["has_webhook_secret"] is True
    return {"owner": owner, "editor": editor, "viewer": viewer, "stranger": stranger, "workspace": workspace,
            "secret": secret, "uuid": response.json["data"]["uuid"], "id": response.json["data"]["id"]}


class _Hook:
    def __init__(self, uuid: str) -> None:
        self.uuid = uuid


def test_a_valid_signature_is_accepted_without_a_token(client, worker, scene):
    body = json.dumps({"email": "signed@example.com"}).encode()
    response = client.post(hook_url(_Hook(scene["uuid"]), "source=hmac"), data=body,
                           headers=sign(scene["secret"], body))
    assert response.status_code == 202, response.json
    data = response.json["data"]
    assert data["mode"] == "webhook"
    assert wait_finished(data["uuid"], worker)["status"] == "completed"
    row = stored(data["uuid"])
    assert row.user_id == scene["editor"].id  # attributed to the workflow's owner (who created it)
    assert row.output == {"echo": {"email": "signed@example.com", "source": "hmac"}}
    headers = trigger_entry(data["uuid"])["output"]["headers"]
    assert "x-athena-signature" not in headers and headers["x-athena-timestamp"]

    # wait=true works for signed calls too (signed anew: each signature is accepted once)
    response = client.post(hook_url(_Hook(scene["uuid"]), "wait=true"), data=body,
                           headers=sign(scene["secret"], body, int(time.time()) + 1))
    assert response.status_code == 200 and response.json["data"]["status"] == "completed", response.json


def test_bad_stale_future_or_missing_signatures_are_401(client, scene):
    hook = _Hook(scene["uuid"])
    body = b'{"email": "x@example.com"}'
    now = int(time.time())
    cases = {
        "wrong secret": sign("another-secret-of-32-characters!", body),
        "body changed": sign(scene["secret"], body + b" "),
        "stale": sign(scene["secret"], body, now - 600),
        "future": sign(scene["secret"], body, now + 600),
        "garbage timestamp": {**sign(scene["secret"], body), "X-Athena-Timestamp": "yesterday"},
        "no timestamp": {"X-Athena-Signature": sign(scene["secret"], body)["X-Athena-Signature"]},
        "no signature": {"X-Athena-Timestamp": str(now)},
        "not sha256=": {**sign(scene["secret"], body),
                        "X-Athena-Signature": sign(scene["secret"], body)["X-Athena-Signature"][7:]},
        "nothing": {},
    }
    for name, headers in cases.items():
        response = client.post(hook_url(hook), data=body, headers={"Content-Type": "application/json", **headers})
        assert response.status_code == 401, (name, response.json)
        assert response.json["message"], name
    # a signature for another workflow / an unknown one / a workflow without a secret
    unknown = client.post(f"/api/v1/workflows/{uuid.uuid4()}/webhook", data=body, headers=sign(scene["secret"], body))
    assert unknown.status_code == 401
    # not a uuid: no such route (a 404 that says nothing about any workflow)
    malformed = client.post("/api/v1/workflows/no-such-workflow/webhook", data=body, headers=sign(scene["secret"], body))
    assert malformed.status_code == 404 and malformed.is_json
    nodes, edges = webhook_graph()
    plain = make_workflow(scene["workspace"], scene["owner"], nodes=nodes, edges=edges)
    assert client.post(hook_url(plain), data=body, headers=sign(scene["secret"], body)).status_code == 401
    assert client.post(hook_url(plain), data=body).status_code == 401  # no secret: a token is required
    assert _count() == 0


def test_tokens_still_work_with_their_permissions(client, worker, scene):
    hook = _Hook(scene["uuid"])
    body = b'{"email": "member@example.com"}'
    response = client.post(hook_url(hook), data=body, headers={**headers_for(scene["editor"]),
                                                               "Content-Type": "application/json"})
    assert response.status_code == 202, response.json  # a member may trigger by hand
    assert stored(response.json["data"]["uuid"]).user_id == scene["editor"].id
    wait_finished(response.json["data"]["uuid"], worker)
    before = _count()
    # A token always takes the token path, even with a valid signature alongside.
    assert client.post(hook_url(hook), data=body, headers={**sign(scene["secret"], body),
                                                           **headers_for(scene["viewer"])}).status_code == 403
    assert client.post(hook_url(hook), data=body, headers={**sign(scene["secret"], body),
                                                           **headers_for(scene["stranger"])}).status_code == 404
    assert client.post(hook_url(hook), data=body, headers={**sign(scene["secret"], body),
                                                           "Authorization": "Bearer nope"}).status_code == 401
    assert _count() == before


def test_inactive_workflow_is_409_for_signed_calls(client, scene):
    headers = headers_for(scene["owner"])
    assert client.put(f"{WORKFLOWS}/{scene['uuid']}", json={"is_active": False}, headers=headers).status_code == 200
    body = b"{}"
    response = client.post(hook_url(_Hook(scene["uuid"])), data=body, headers=sign(scene["secret"], body))
    assert response.status_code == 409, response.json
    assert _count() == 0


def test_the_secret_is_never_shown_nor_stored_in_clear(client, worker, scene):
    secret, headers = scene["secret"], headers_for(scene["owner"])
    responses = [
        client.get(f"{WORKFLOWS}/{scene['uuid']}", headers=headers),
        client.get(f"{WORKFLOWS}?workspace_uuid={scene['workspace'].uuid}", headers=headers),
        client.put(f"{WORKFLOWS}/{scene['uuid']}", json={"name": "Renamed"}, headers=headers),
    ]
    for response in responses:
        assert response.status_code == 200, response.json
        assert secret not in response.get_data(as_text=True)
        assert '"webhook_secret"' not in response.get_data(as_text=True)  # only has_webhook_secret
    [stored_value] = db.session.execute(text("SELECT webhook_secret FROM workflows WHERE id = :id"),
                                        {"id": scene["id"]}).one()
    assert stored_value and stored_value.startswith("enc:v1:") and secret not in stored_value
    assert len(stored_value) <= 255

    # Rotating: the new secret signs, the old one no longer does; null removes it.
    new_secret = "n" * 64
    assert client.put(f"{WORKFLOWS}/{scene['uuid']}", json={"webhook_secret": new_secret},
                      headers=headers).status_code == 200
    [rotated] = db.session.execute(text("SELECT webhook_secret FROM workflows WHERE id = :id"),
                                   {"id": scene["id"]}).one()
    assert new_secret not in rotated and len(rotated) <= 255
    body = b"{}"
    hook = _Hook(scene["uuid"])
    assert client.post(hook_url(hook), data=body, headers=sign(secret, body)).status_code == 401
    accepted = client.post(hook_url(hook), data=body, headers=sign(new_secret, body))
    assert accepted.status_code == 202, accepted.json
    wait_finished(accepted.json["data"]["uuid"], worker)
    too_long = client.put(f"{WORKFLOWS}/{scene['uuid']}", json={"webhook_secret": "é" * 40}, headers=headers)
    assert too_long.status_code == 422 and "webhook_secret" in too_long.json["errors"]
    cleared = client.put(f"{WORKFLOWS}/{scene['uuid']}", json={"webhook_secret": None}, headers=headers)
    assert cleared.status_code == 200 and cleared.json["data"]["has_webhook_secret"] is False
    assert client.post(hook_url(hook), data=body, headers=sign(new_secret, body)).status_code == 401


def test_a_secret_stored_before_encryption_still_verifies(client, worker):
    owner = make_user()
    workspace = make_workspace(owner)
    nodes, edges = webhook_graph()
    legacy = make_workflow(workspace, owner, nodes=nodes, edges=edges, webhook_secret="legacy-secret-0123456789")
    body = b'{"email": "old@example.com"}'
    response = client.post(hook_url(legacy), data=body, headers=sign("legacy-secret-0123456789", body))
    assert response.status_code == 202, response.json
    assert wait_finished(response.json["data"]["uuid"], worker)["status"] == "completed"
