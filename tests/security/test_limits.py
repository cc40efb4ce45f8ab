"""Resource limits (issue "Crash-proof execution and security hardening", item 10).

- request bodies over ``MAX_CONTENT_LENGTH`` are a JSON 413 and create nothing (webhook, signed
  webhook, workflow create);
- ``EXECUTION_MAX_STEPS`` / ``EXECUTION_MAX_DURATION`` fail the run: in the pure engine with the
  real node registry, and through a real worker process of this module started with
  ``ATHENA_EXECUTION_MAX_STEPS`` / ``ATHENA_EXECUTION_MAX_DURATION`` in its environment (the
  session worker cannot be reconfigured), on its own queue.

The HTTP response cap and the LLM ``max_tokens`` bounds are tested in
tests/engine/test_http_request.py (``test_response_cap``) and tests/nodes/test_llm_node.py."""
from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from rq import Queue

from athena.engine import Graph, RunContext, RunFinished, RunState, run_graph
from athena.extensions import db
from athena.models import Workflow, WorkflowExecution
from athena.services import executions as service
from tests.api.helpers import assert_json_error
from tests.executions.test_webhook import hook_url, webhook_graph
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes.test_webhook_hmac import sign
from tests.support.servers import WorkerProcess, http_url, send_json, serve_http, wait_for

MAX_STEPS = 5
MAX_DURATION = 3.0  # seconds, for the worker of this module
SLOW_SECONDS = 2.0  # each request to the slow target takes at least this long


def _count(model) -> int:
    db.session.expire_all()
    return db.session.execute(db.select(db.func.count()).select_from(model)).scalar_one()


# -- request bodies ------------------------------------------------------------------------------
def test_oversized_webhook_bodies_are_413_json_and_create_nothing(app, client):
    owner = make_user()
    nodes, edges = webhook_graph()
    workflow = make_workflow(make_workspace(owner), owner, nodes=nodes, edges=edges)
    headers = headers_for(owner)
    size = app.config["MAX_CONTENT_LENGTH"] + 1
    big_json = b'{"a": "' + b"x" * size + b'"}'
    big_text = b"x" * size
    cases = [
        ({**headers, "Content-Type": "application/json"}, big_json),
        ({**headers, "Content-Type": "text/plain"}, big_text),
        ({**headers, "Content-Type": "application/x-www-form-urlencoded"}, b"a=" + big_text),
    ]
    for request_headers, body in cases:
        response = client.post(hook_url(workflow), data=body, headers=request_headers)
        assert_json_error(response, 413)
    assert _count(WorkflowExecution) == 0
    db.session.refresh(workflow)
    assert workflow.trigger_count == 0


def test_oversized_signed_webhook_is_413(app, client):
    owner = make_user()
    workspace = make_workspace(owner)
    nodes, edges = webhook_graph()
    created = client.post("/api/v1/workflows", headers=headers_for(owner), json={
        "workspace_uuid": workspace.uuid, "name": "Signed", "nodes": nodes, "edges": edges,
        "webhook_secret": "s" * 32})
    assert created.status_code == 201, created.json
    body = b'{"a": "' + b"x" * app.config["MAX_CONTENT_LENGTH"] + b'"}'
    response = client.post(f"/api/v1/workflows/{created.json['data']['uuid']}/webhook", data=body,
                           headers=sign("s" * 32, body))
    assert_json_error(response, 413)
    assert _count(WorkflowExecution) == 0


def test_oversized_workflow_create_is_413_json(app, client):
    owner = make_user()
    workspace = make_workspace(owner)
    padding = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post("/api/v1/workflows", headers=headers_for(owner), json={
        "workspace_uuid": workspace.uuid, "name": "Huge", "description": padding,
        "nodes": [{"id": "start", "type": "manual"}], "edges": []})
    assert_json_error(response, 413)
    assert _count(Workflow) == 0


# -- run limits in the pure engine -------------------------------------------------------------
def _set_chain(count: int) -> tuple[list[dict], list[dict]]:
    nodes = [{"id": "start", "type": "manual"}]
    nodes += [{"id": f"s{i}", "type": "set", "parameters": {"fields": {"i": i}}} for i in range(1, count)]
    edges = [{"source": nodes[i - 1]["id"], "target": nodes[i]["id"]} for i in range(1, count)]
    return nodes, edges


def test_engine_max_steps_fails_the_run_with_the_real_registry():
    graph = Graph.parse(*_set_chain(10))
    state = RunState()
    events = list(run_graph(graph, RunContext(max_steps=MAX_STEPS), state))
    final = events[-1]
    assert isinstance(final, RunFinished) and final.status == "failed"
    assert final.error == f"step limit exceeded: more than {MAX_STEPS} node executions"
    assert state.steps == MAX_STEPS and len(state.entries) == MAX_STEPS


def test_engine_max_duration_fails_the_run_with_an_injected_clock():
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ticks = iter(start + timedelta(seconds=10 * i) for i in range(1000))  # every node "takes" 10 s
    graph = Graph.parse(*_set_chain(10))
    events = list(run_graph(graph, RunContext(max_duration=25, now=lambda: next(ticks)), RunState()))
    final = events[-1]
    assert isinstance(final, RunFinished) and final.status == "failed"
    assert final.error == "time limit exceeded: run took longer than 25 seconds"


# -- run limits through a real worker ------------------------------------------------------------
class SlowTarget:
    """Answers every ``GET`` after sleeping ``SLOW_SECONDS`` (a lower bound, so the run's elapsed
    time is certainly over the limit: the assertion never depends on the machine's speed)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                time.sleep(SLOW_SECONDS)
                send_json(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = serve_http(Handler)

    @property
    def url(self) -> str:
        return http_url(self.server)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def limited_worker(test_settings) -> Iterator[tuple[WorkerProcess, str]]:
    queue = f"{test_settings['queue']}-limits"
    process = WorkerProcess(
        test_settings["database_url"], test_settings["redis_url"], queue, test_settings["tmp"] / "limits-worker.log",
        extra_env={"ATHENA_EXECUTION_MAX_STEPS": str(MAX_STEPS), "ATHENA_EXECUTION_MAX_DURATION": str(MAX_DURATION),
                   "ATHENA_HTTP_ALLOWLIST": "127.0.0.1"},
    ).start()
    yield process, queue
    process.stop()


def _run_on(queue_name: str, redis_conn, nodes: list[dict], edges: list[dict]) -> str:
    """Create a pending execution and enqueue the real job on ``queue_name``."""
    user = make_user()
    workflow = make_workflow(make_workspace(user), user, nodes=nodes, edges=edges)
    execution = service.create_execution(workflow, user, mode="manual", start=False)
    Queue(queue_name, connection=redis_conn).enqueue(
        service.JOB_FUNCTION, execution.id, None, job_id=service.job_id_for(execution),
        job_timeout=600, result_ttl=300, failure_ttl=3600)
    return execution.uuid


def _finished(uuid: str, worker: WorkerProcess) -> WorkflowExecution:
    def done() -> WorkflowExecution | None:
        db.session.expire_all()
        row = db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid == uuid)).scalar_one()
        return row if row.is_finished else None

    return wait_for(done, timeout=90, interval=0.1, message=f"{uuid} to finish:\n{worker.read_log()[-3000:]}")


def test_worker_enforces_max_steps_from_its_environment(limited_worker, redis_conn):
    process, queue = limited_worker
    uuid = _run_on(queue, redis_conn, *_set_chain(10))
    execution = _finished(uuid, process)
    assert execution.status == "failed"
    assert execution.error and f"step limit exceeded: more than {MAX_STEPS} node executions" in execution.error
    ran = [e["node_id"] for e in execution.execution_data.workflow_data if e["status"] == "success"]
    assert ran == ["start", "s1", "s2", "s3", "s4"]


@pytest.mark.slow
def test_worker_enforces_max_duration_from_its_environment(limited_worker, redis_conn):
    process, queue = limited_worker
    target = SlowTarget()
    try:
        # manual + 4 slow requests: fewer nodes than the step limit, longer than the time limit
        nodes = [{"id": "start", "type": "manual"}]
        nodes += [{"id": f"h{i}", "type": "http_request", "parameters": {"url": f"{target.url}/{i}", "timeout": 60}}
                  for i in range(1, 5)]
        edges = [{"source": nodes[i - 1]["id"], "target": nodes[i]["id"]} for i in range(1, len(nodes))]
        execution = _finished(_run_on(queue, redis_conn, nodes, edges), process)
    finally:
        target.close()
    assert execution.status == "failed"
    assert execution.error and "time limit exceeded" in execution.error, execution.error
    done = [e["node_id"] for e in execution.execution_data.workflow_data if e["status"] == "success"]
    assert "h4" not in done and len(done) < MAX_STEPS
