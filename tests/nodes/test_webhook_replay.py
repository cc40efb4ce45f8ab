"""A signed webhook request cannot be replayed (issue 13, item 4): each signature is accepted once,
remembered in the real Redis until its timestamp is stale; the real worker runs what is accepted.

Signatures are unique to each test (random secrets, fresh bodies) and their Redis keys are
deleted at the end, so nothing leaks into other tests."""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest

from athena.extensions import db
from athena.models import Workflow, WorkflowExecution
from athena.api.webhook_auth import CLOCK_SKEW_SECONDS, seen_key
from tests.api.helpers import assert_json_error
from tests.support.redis_down import redis_unreachable
from tests.executions.test_webhook import wait_finished, webhook_graph
from tests.factories import headers_for, make_user, make_workspace
from tests.nodes import clean_rq
from tests.nodes.test_webhook_hmac import sign

__all__ = ["clean_rq"]  # the autouse fixture

WORKFLOWS = "/api/v1/workflows"


def _count(uuid: str) -> int:
    db.session.expire_all()
    return db.session.execute(
        db.select(db.func.count()).select_from(WorkflowExecution)
        .join(Workflow, Workflow.id == WorkflowExecution.workflow_id).where(Workflow.uuid == uuid)
    ).scalar_one()


class Scene:
    def __init__(self, client, redis_conn) -> None:
        self.client = client
        self.redis = redis_conn
        self.owner = make_user()
        self.workspace = make_workspace(self.owner)
        self.signatures: list[str] = []

    def workflow(self, secret: str) -> str:
        nodes, edges = webhook_graph()
        response = self.client.post(WORKFLOWS, headers=headers_for(self.owner), json={
            "workspace_uuid": self.workspace.uuid, "name": "Signed", "nodes": nodes, "edges": edges,
            "webhook_secret": secret})
        assert response.status_code == 201, response.json
        return response.json["data"]["uuid"]

    def sign(self, secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        headers = sign(secret, body, timestamp)
        self.signatures.append(headers["X-Athena-Signature"].removeprefix("sha256="))
        return headers

    def post(self, uuid: str, body: bytes, headers: dict[str, str], query: str = ""):
        return self.client.post(f"{WORKFLOWS}/{uuid}/webhook" + (f"?{query}" if query else ""),
                                data=body, headers=headers)


@pytest.fixture
def scene(client, redis_conn) -> Iterator[Scene]:
    scene = Scene(client, redis_conn)
    yield scene
    if scene.signatures:
        redis_conn.delete(*(seen_key(signature) for signature in scene.signatures))


def _body() -> bytes:
    return json.dumps({"email": f"{secrets.token_hex(6)}@example.com"}).encode()


def test_a_replayed_signed_request_is_409(scene, worker):
    secret = secrets.token_urlsafe(24)
    uuid = scene.workflow(secret)
    body = _body()
    headers = scene.sign(secret, body)

    first = scene.post(uuid, body, headers)
    assert first.status_code == 202, first.json
    wait_finished(first.json["data"]["uuid"], worker)

    replay = scene.post(uuid, body, headers)
    message = assert_json_error(replay, 409)["message"]
    assert "replay" in message and "already accepted" in message, message
    print(f"replayed signed webhook: {replay.status_code} {message!r}")
    # The query string is not signed: changing it does not make a new request, nor does wait=true.
    assert_json_error(scene.post(uuid, body, headers, query="source=again"), 409)
    assert_json_error(scene.post(uuid, body, headers, query="wait=true"), 409)
    # Nor does sending it to another workflow that shares the secret.
    twin = scene.workflow(secret)
    assert_json_error(scene.post(twin, body, headers), 409)
    assert _count(uuid) == 1 and _count(twin) == 0


def test_re_signed_with_a_new_timestamp_is_accepted(scene, worker):
    secret = secrets.token_urlsafe(24)
    uuid = scene.workflow(secret)
    body = _body()
    now = int(time.time())
    first = scene.post(uuid, body, scene.sign(secret, body, now))
    assert first.status_code == 202, first.json
    assert_json_error(scene.post(uuid, body, scene.sign(secret, body, now)), 409)
    again = scene.post(uuid, body, scene.sign(secret, body, now + 1))  # the client's retry: re-signed
    assert again.status_code == 202, again.json
    for response in (first, again):
        assert wait_finished(response.json["data"]["uuid"], worker)["status"] == "completed"
    assert _count(uuid) == 2


def test_an_invalid_signature_replayed_is_still_401(scene, worker):
    secret = secrets.token_urlsafe(24)
    uuid = scene.workflow(secret)
    body = _body()
    now = int(time.time())
    wrong = scene.sign("not-the-secret-of-this-workflow!", body, now)
    stale = scene.sign(secret, body, now - 600)
    for headers in (wrong, wrong, stale, stale):
        response = scene.post(uuid, body, headers)
        assert_json_error(response, 401)
    # Nothing was remembered for them: the valid request of the same second is accepted, once.
    valid = scene.sign(secret, body, now)
    accepted = scene.post(uuid, body, valid)
    assert accepted.status_code == 202, accepted.json
    wait_finished(accepted.json["data"]["uuid"], worker)
    assert_json_error(scene.post(uuid, body, valid), 409)
    assert not scene.redis.exists(seen_key(wrong["X-Athena-Signature"].removeprefix("sha256=")))
    assert _count(uuid) == 1


def test_a_refused_call_does_not_use_up_its_signature(scene, worker, client):
    """An inactive workflow (409, not a replay) creates nothing and leaves the signature unused."""
    secret = secrets.token_urlsafe(24)
    uuid = scene.workflow(secret)
    owner = headers_for(scene.owner)
    assert client.put(f"{WORKFLOWS}/{uuid}", json={"is_active": False}, headers=owner).status_code == 200
    body = _body()
    headers = scene.sign(secret, body)
    inactive = assert_json_error(scene.post(uuid, body, headers), 409)
    assert "inactive" in inactive["message"] and "replay" not in inactive["message"]
    assert client.put(f"{WORKFLOWS}/{uuid}", json={"is_active": True}, headers=owner).status_code == 200
    accepted = scene.post(uuid, body, headers)
    assert accepted.status_code == 202, accepted.json
    wait_finished(accepted.json["data"]["uuid"], worker)
    assert_json_error(scene.post(uuid, body, headers), 409)


def test_a_signature_is_remembered_while_its_timestamp_is_fresh(app, scene, worker):
    """Kept until timestamp + tolerance (+ a margin for clocks), whichever side of now it is."""
    tolerance = app.config["WEBHOOK_SIGNATURE_TOLERANCE_SECONDS"]
    secret = secrets.token_urlsafe(24)
    uuid = scene.workflow(secret)
    for offset in (-tolerance // 2, 0, tolerance // 2):  # a past, a present and a future timestamp
        body = _body()
        timestamp = int(time.time()) + offset
        headers = scene.sign(secret, body, timestamp)
        before = time.time()
        accepted = scene.post(uuid, body, headers)
        assert accepted.status_code == 202, accepted.json
        wait_finished(accepted.json["data"]["uuid"], worker)
        ttl_ms = scene.redis.pttl(seen_key(scene.signatures[-1]))
        fresh_for_ms = (timestamp + tolerance - before) * 1000
        assert fresh_for_ms < ttl_ms <= fresh_for_ms + CLOCK_SKEW_SECONDS * 1000, (offset, ttl_ms, fresh_for_ms)


def test_fails_closed_when_redis_is_unreachable(app, scene, worker):
    """Replays cannot be checked without Redis: 503, nothing created, the signature still unused."""
    secret = secrets.token_urlsafe(24)
    uuid = scene.workflow(secret)
    body = _body()
    headers = scene.sign(secret, body)
    with redis_unreachable(app):
        refused = scene.post(uuid, body, headers)
    assert "replays" in assert_json_error(refused, 503)["message"]
    assert _count(uuid) == 0
    accepted = scene.post(uuid, body, headers)
    assert accepted.status_code == 202, accepted.json
    wait_finished(accepted.json["data"]["uuid"], worker)


def test_the_409_is_documented(client):
    responses = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/workflows/{uuid}/webhook"]["post"][
        "responses"]
    assert "409" in responses and "replay" in responses["409"]["description"]
