"""Webhook rate limit per workflow (issue "Crash-proof execution and security hardening", item 3).

Real Redis counter, the real webhook endpoint; the session worker runs what the allowed calls
create. The limit is set on the shared app config for the test and restored afterwards."""
from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from athena.extensions import db
from athena.models import WorkflowExecution
from athena.services.rate_limit import rate_key
from tests.api.helpers import assert_json_error
from tests.executions.test_webhook import hook_url, webhook_graph
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes.test_webhook_hmac import sign
from tests.support.servers import wait_for

LIMIT = 3


@contextmanager
def rate_limit(app, limit: int, window: float) -> Iterator[None]:
    saved = app.config["WEBHOOK_RATE_LIMIT"], app.config["WEBHOOK_RATE_WINDOW_SECONDS"]
    app.config["WEBHOOK_RATE_LIMIT"], app.config["WEBHOOK_RATE_WINDOW_SECONDS"] = limit, window
    try:
        yield
    finally:
        app.config["WEBHOOK_RATE_LIMIT"], app.config["WEBHOOK_RATE_WINDOW_SECONDS"] = saved


def _executions(workflow) -> int:
    db.session.expire_all()
    return db.session.execute(
        db.select(db.func.count()).select_from(WorkflowExecution).where(WorkflowExecution.workflow_id == workflow.id)
    ).scalar_one()


@pytest.fixture
def scene(redis_conn, worker):
    owner, stranger = make_user(), make_user()
    workspace = make_workspace(owner)
    make_workspace(stranger)
    nodes, edges = webhook_graph()
    first = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    second = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    yield {"first": first, "second": second, "headers": headers_for(owner), "stranger": headers_for(stranger)}
    redis_conn.delete(rate_key(first.uuid), rate_key(second.uuid))
    # Let the worker finish what the test created: a job still queued when the tables are emptied
    # would run a later test's execution that reuses the same integer id.
    wait_for(lambda: _unfinished() == 0, timeout=60, interval=0.1, message="the test's executions to finish")


def _unfinished() -> int:
    db.session.rollback()
    return db.session.execute(
        db.select(db.func.count()).select_from(WorkflowExecution).where(WorkflowExecution.is_finished.is_(False))
    ).scalar_one()


def test_limit_then_429_with_retry_after_and_nothing_created(app, client, worker, scene):
    first, headers = scene["first"], scene["headers"]
    with rate_limit(app, LIMIT, 60):
        for i in range(LIMIT):
            response = client.post(hook_url(first), json={"i": i}, headers=headers)
            assert response.status_code == 202, (i, response.json)
        assert _executions(first) == LIMIT

        for _ in range(2):
            refused = client.post(hook_url(first), json={"i": "over"}, headers=headers)
            body = assert_json_error(refused, 429)
            assert "Too many" in body["message"]
            retry_after = refused.headers.get("Retry-After")
            assert retry_after is not None and retry_after.isdigit(), refused.headers
            assert 1 <= int(retry_after) <= 60
        assert _executions(first) == LIMIT  # a 429 creates nothing
        db.session.refresh(first)
        assert first.trigger_count == LIMIT

        # ?wait=true is refused the same way (before any execution exists to wait for)
        assert_json_error(client.post(hook_url(first, "wait=true"), json={}, headers=headers), 429)
        assert _executions(first) == LIMIT

        # Another workflow has its own budget.
        for _ in range(LIMIT):
            assert client.post(hook_url(scene["second"]), json={}, headers=headers).status_code == 202
        assert _executions(scene["second"]) == LIMIT


def test_callers_who_may_not_trigger_never_see_the_limit(app, client, worker, scene):
    """Authentication and authorization come first: a stranger cannot probe the counter."""
    first, headers = scene["first"], scene["headers"]
    with rate_limit(app, 1, 60):
        assert client.post(hook_url(first), json={}, headers=headers).status_code == 202
        assert_json_error(client.post(hook_url(first), json={}, headers=headers), 429)
        assert client.post(hook_url(first), json={}, headers=scene["stranger"]).status_code == 404
        assert client.post(hook_url(first), json={}).status_code == 401
        bad_signature = sign("not-the-secret", b"{}")
        assert client.post(hook_url(first), data=b"{}", headers=bad_signature).status_code == 401
    assert _executions(first) == 1


def test_signed_calls_count_against_the_same_limit(app, client, worker, scene, redis_conn):
    headers = scene["headers"]
    secret = secrets.token_urlsafe(24)
    nodes, edges = webhook_graph()
    created = client.post("/api/v1/workflows", headers=headers, json={
        "workspace_uuid": scene["first"].workspace.uuid, "name": "Signed", "nodes": nodes, "edges": edges,
        "webhook_secret": secret})
    assert created.status_code == 201, created.json
    uuid = created.json["data"]["uuid"]
    url = f"/api/v1/workflows/{uuid}/webhook"
    body = json.dumps({"signed": True}).encode()
    try:
        with rate_limit(app, 2, 60):
            assert client.post(url, data=body, headers=sign(secret, body)).status_code == 202
            assert client.post(url, json={}, headers=headers).status_code == 202  # token call: same budget
            refused = client.post(url, data=body, headers=sign(secret, body))
            assert_json_error(refused, 429)
            assert refused.headers["Retry-After"].isdigit()
    finally:
        redis_conn.delete(rate_key(uuid))


def test_the_window_resets(app, client, worker, scene):
    first, headers = scene["first"], scene["headers"]
    with rate_limit(app, 2, 1.0):
        for _ in range(2):
            assert client.post(hook_url(first), json={}, headers=headers).status_code == 202
        refused = client.post(hook_url(first), json={}, headers=headers)
        assert_json_error(refused, 429)
        assert refused.headers["Retry-After"] == "1"  # never more than the window (rounded up)

        # Bounded wait (a safety net, not a timing assertion): the next window admits again.
        wait_for(lambda: client.post(hook_url(first), json={}, headers=headers).status_code == 202,
                 timeout=15, interval=0.2, message="the rate window to reset")
        assert _executions(first) == 3


def test_zero_disables_the_limit(app, client, worker, scene):
    with rate_limit(app, 0, 60):
        for _ in range(5):
            assert client.post(hook_url(scene["first"]), json={}, headers=scene["headers"]).status_code == 202
    assert _executions(scene["first"]) == 5


def test_the_429_is_documented(client):
    spec = client.get("/api/v1/openapi.json").json
    responses = spec["paths"]["/api/v1/workflows/{uuid}/webhook"]["post"]["responses"]
    assert "429" in responses and "Retry-After" in responses["429"]["headers"]
