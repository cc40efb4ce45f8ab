"""Issue "Crash-proof execution and security hardening", item 3: Redis dies and comes back.

A self-contained stack per test: its own embedded Redis with persistence (AOF, fsync every
second) in a temporary directory on a free port, the shared test database, a fresh app
(``create_app`` with a config pointing at that Redis and its own queue) and its own worker
processes. Redis is killed with SIGKILL (harsher than ``SHUTDOWN NOSAVE``: up to a second of
writes may be lost) and restarted on the same port with the same data directory.

(a) Executions in flight (two running, mid-node; two queued; two whose enqueue was lost) all
    end ``completed``; no node checkpointed before the crash runs again.
(b) A timed wait and a pending approval survive killing web, worker and Redis together: the
    wait resumes (RQ's scheduler from the AOF, or the sweeper) and completes; the approval is
    approved over the HTTP API of the restarted web and completes.

While a stack runs, the session worker is paused: sweepers are database-wide and check leases
and jobs in their own Redis, so the session worker's sweeper would otherwise adopt this stack's
executions. Waits are bounded safety nets, never timing assertions."""
from __future__ import annotations

import signal
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from rq.job import Job

import config
from athena import create_app
from athena.dev.embedded_redis import EmbeddedRedis, start_embedded_redis
from athena.runs.eventlog import event_log_for_app, stream_key
from athena.redis_client import get_redis
from athena.extensions import db
from athena.models import WorkflowExecution
from athena.services import executions as service
from jobs.sweeper import sweep
from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.reliability.support import CountingTarget
from tests.support.servers import LiveServer, WorkerProcess, wait_for

SAFETY = 120.0  # seconds: bound of every wait (a safety net, not an assertion about speed)
LEASE_SECONDS = 2
TERMINAL = ("completed", "failed", "cancelled")


class Stack:
    """Embedded persistent Redis + app + worker processes on a private queue."""

    def __init__(self, test_settings: dict[str, Any], tmp: Path, workers: int) -> None:
        self.settings = test_settings
        self.tmp = tmp
        self.data_dir = str(tmp / "redis")
        self.queue = f"athena-redis-restart-{uuid_lib.uuid4().hex[:8]}"
        self.redis: EmbeddedRedis = start_embedded_redis(data_dir=self.data_dir)
        self.port = self.redis.port
        self.app = self.build_app()
        self.workers = [self._worker(i) for i in range(workers)]
        self.restarts = 0

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def build_app(self) -> Flask:
        """A fresh app (also: "restart the web")."""
        stack = self

        class StackConfig(config.TestConfig):
            SQLALCHEMY_DATABASE_URI = config._database_url(stack.settings["database_url"])
            REDIS_URL = stack.redis_url
            QUEUE_NAME = stack.queue
            EXECUTION_LEASE_SECONDS = float(LEASE_SECONDS)

        return create_app(StackConfig)

    def _worker(self, index: int) -> WorkerProcess:
        return WorkerProcess(
            self.settings["database_url"], self.redis_url, self.queue, self.tmp / f"worker-{index}.log",
            extra_env={"ATHENA_HTTP_ALLOWLIST": "127.0.0.1", "ATHENA_LEASE_SECONDS": str(LEASE_SECONDS),
                       "ATHENA_SWEEPER_INTERVAL": "3", "ATHENA_SWEEPER_GRACE": "1"},
        ).start()

    def kill_redis(self) -> None:
        self.redis.process.send_signal(signal.SIGKILL)
        self.redis.process.wait(30)
        self.redis.stop()  # reaps and closes the log file

    def start_redis(self) -> None:
        self.redis = start_embedded_redis(port=self.port, data_dir=self.data_dir)

    def kill_workers(self) -> None:
        for worker in self.workers:
            worker.kill(signal.SIGKILL)
            worker.process.wait(30)

    def revive_workers(self) -> None:
        """RQ workers survive an idle outage (they retry) but quit when Redis fails mid-job."""
        for worker in self.workers:
            if not worker.alive():
                worker.process.wait(30)
                worker.log.close()
                worker.start()
                self.restarts += 1

    def logs(self) -> str:
        return "\n".join(worker.read_log()[-5000:] for worker in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.redis.stop()


@pytest.fixture
def stack_factory(app, worker, test_settings, tmp_path) -> Iterator[Any]:
    """Builds stacks; pauses the session worker (see the module docstring) meanwhile."""
    stacks: list[Stack] = []

    def build(workers: int) -> Stack:
        stacks.append(Stack(test_settings, tmp_path, workers))
        return stacks[-1]

    worker.stop()
    try:
        yield build
    finally:
        for stack in stacks:
            stack.close()
        worker.start()


def _wait(stack: Stack, predicate: Callable[[], Any], what: str, interval: float = 0.1) -> Any:
    """``wait_for`` with the workers' logs as they are when the bound is reached."""
    try:
        return wait_for(predicate, timeout=SAFETY, interval=interval, message=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None


def _row(uuid: str) -> WorkflowExecution:
    db.session.rollback()
    return db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid == uuid)).scalar_one()


def _entries(uuid: str) -> dict[str, dict[str, Any]]:
    return {e["node_id"]: e for e in (_row(uuid).execution_data.workflow_data or [])}


def _sweep_until_terminal(stack: Stack, uuids: list[str]) -> dict[str, WorkflowExecution]:
    """Drive the real sweeper (as the workers' periodic job would), reviving dead workers."""
    def all_terminal() -> dict[str, WorkflowExecution] | None:
        stack.revive_workers()
        sweep(grace_seconds=0)
        rows = {uuid: _row(uuid) for uuid in uuids}
        return rows if all(row.status in TERMINAL for row in rows.values()) else None

    return _wait(stack, all_terminal, "every execution to end", interval=0.5)


# -- (a) ---------------------------------------------------------------------------------------
NODES = 5  # a1 (hit), a2 (hold), a3..a5 (hit)


def _held_chain(target: CountingTarget, key: str) -> tuple[list[dict], list[dict]]:
    nodes: list[dict] = [{"id": "start", "type": "manual"}]
    for i in range(1, NODES + 1):
        kind = "hold" if i == 2 else "hit"
        nodes.append({"id": f"a{i}", "type": "http_request",
                      "parameters": {"url": f"{target.url}/{kind}/{key}-a{i}", "timeout": 120}})
    edges = [{"source": nodes[i - 1]["id"], "target": nodes[i]["id"]} for i in range(1, len(nodes))]
    return nodes, edges


@pytest.mark.slow
def test_redis_killed_mid_run_loses_no_execution(stack_factory):
    stack: Stack = stack_factory(2)
    target = CountingTarget()
    try:
        with stack.app.app_context():
            user = make_user()
            workspace = make_workspace(user)
            started: dict[str, str] = {}  # execution uuid -> key of its target paths
            for k in range(6):
                key = f"x{k}"
                workflow = make_workflow(workspace, user, *_held_chain(target, key))
                # The last two are never enqueued: an enqueue lost with Redis' unsynced tail.
                execution = service.create_execution(workflow, user, mode="manual", start=k < 4)
                started[execution.uuid] = key

            def held() -> list[str]:
                return [key for key in started.values() if target.counts[f"{key}-a2"] >= 1]

            # Both workers are inside a2 (holding); the other executions wait in the queue.
            running = _wait(stack, lambda: len(held()) >= 2 and held(), "two executions mid-node")
            time.sleep(1.5)  # appendfsync everysec: the queued jobs reach the AOF (not an assertion)
            stack.kill_redis()
            target.release()  # the held nodes finish while Redis is down
            by_key = {key: uuid for uuid, key in started.items()}

            def held_checkpointed() -> bool:
                held_entries = {key: _entries(by_key[key]).get("a2", {}) for key in running}
                broken = {key: (entry.get("status"), entry.get("error"), _row(by_key[key]).status)
                          for key, entry in held_entries.items() if entry.get("status") == "error"}
                assert not broken, f"the Redis outage failed the node that was running: {broken}"
                return all(entry.get("status") == "success" for entry in held_entries.values())

            _wait(stack, held_checkpointed, "the held nodes' checkpoints")
            stack.start_redis()
            rows = _sweep_until_terminal(stack, list(started))

            statuses = {uuid: (row.status, row.error) for uuid, row in rows.items()}
            assert all(row.status == "completed" for row in rows.values()), (statuses, stack.logs())
            for uuid, key in started.items():
                entries = _entries(uuid)
                assert [entries[f"a{i}"]["status"] for i in range(1, NODES + 1)] == ["success"] * NODES
                for i in range(1, NODES + 1):
                    assert target.counts[f"{key}-a{i}"] >= 1, (key, dict(target.counts))  # at least once
                # a1 was checkpointed before the crash (or ran after it): it never runs twice
                assert target.counts[f"{key}-a1"] == 1, (key, dict(target.counts))
                assert target.counts[f"{key}-a2"] == 1, (key, dict(target.counts))  # checkpointed during the outage
            repeats = {name: n for name, n in target.counts.items() if n > 1}
            print(f"redis restart (a): {len(rows)} executions completed; worker restarts: {stack.restarts}; "
                  f"nodes run more than once: {repeats or 'none'}")
    finally:
        target.close()


# -- (b) ---------------------------------------------------------------------------------------
API = "/api/v1/workflow-executions"


def _http_start(server: LiveServer, headers: dict[str, str], workflow_uuid: str) -> str:
    response = requests.post(f"{server.url}{API}", json={"workflow_uuid": workflow_uuid, "input": {}},
                             headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["data"]["uuid"]


def _http_status(server: LiveServer, headers: dict[str, str], uuid: str) -> str:
    response = requests.get(f"{server.url}{API}/{uuid}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]["status"]


def _http_wait_status(server: LiveServer, headers: dict[str, str], uuid: str, status: str, stack: Stack) -> None:
    _wait(stack, lambda: _http_status(server, headers, uuid) == status, f"{uuid} to be {status}")


def _resumption_results(uuid: str) -> dict[str, Any]:
    """Return values of the RQ jobs that resumed ``uuid``'s wait (RQ's scheduler: athena-resume-*,
    the sweeper: athena-sweep-*)."""
    results: dict[str, Any] = {}
    for prefix in ("athena-resume-", "athena-sweep-"):
        for key in get_redis().scan_iter(f"rq:job:{prefix}{uuid}-*"):
            job_id = key.decode().removeprefix("rq:job:")
            if ":" in job_id:
                continue
            results[job_id] = Job.fetch(job_id, connection=get_redis()).return_value()
    return results


@pytest.mark.slow
def test_waiting_and_paused_executions_survive_restarting_everything(stack_factory):
    stack: Stack = stack_factory(1)
    with stack.app.app_context():
        user = make_user()
        workspace = make_workspace(user)
        headers = {"Authorization": f"Bearer {token_for(user)}"}
        waits = make_workflow(workspace, user, nodes=[
            {"id": "start", "type": "manual"}, {"id": "w", "type": "wait", "parameters": {"seconds": 6}},
            {"id": "after", "type": "set", "parameters": {"fields": {"done": True}}}],
            edges=[{"source": "start", "target": "w"}, {"source": "w", "target": "after"}])
        reviewed = make_workflow(workspace, user, nodes=[
            {"id": "start", "type": "manual"}, {"id": "review", "type": "approval", "parameters": {"message": "Ship?"}},
            {"id": "yes", "type": "set", "parameters": {"fields": {"shipped": True}}},
            {"id": "no", "type": "set", "parameters": {"fields": {"shipped": False}}}],
            edges=[{"source": "start", "target": "review"},
                   {"source": "review", "target": "yes", "source_handle": "approved"},
                   {"source": "review", "target": "no", "source_handle": "rejected"}])
        waits_uuid, reviewed_uuid = waits.uuid, reviewed.uuid

    web = LiveServer(stack.app).start()
    try:
        waiting = _http_start(web, headers, waits_uuid)
        paused = _http_start(web, headers, reviewed_uuid)
        _http_wait_status(web, headers, waiting, "waiting", stack)
        _http_wait_status(web, headers, paused, "paused", stack)
        time.sleep(1.5)  # appendfsync everysec: the scheduled resumption reaches the AOF (not an assertion)
    finally:
        web.stop()
    stack.kill_workers()
    stack.kill_redis()
    assert _row(waiting).status == "waiting" and _row(paused).status == "paused"

    stack.start_redis()
    stack.app = stack.build_app()  # a new web process, as after a redeploy
    web = LiveServer(stack.app).start()
    try:
        with stack.app.app_context():
            scheduled = get_redis().zrange(f"rq:scheduled:{stack.queue}", 0, -1)
            timer_survived = any(job.decode().startswith(f"athena-resume-{waiting}-") for job in scheduled)
            stack.revive_workers()
            listed = requests.get(f"{web.url}{API}/{paused}/approvals", headers=headers, timeout=30)
            assert listed.status_code == 200, listed.text
            [approval] = listed.json()["data"]
            assert approval["status"] == "pending"
            decided = requests.post(f"{web.url}{API}/{paused}/approvals/{approval['id']}/approve",
                                    json={"comment": "after the restart"}, headers=headers, timeout=30)
            assert decided.status_code == 200, decided.text
            rows = _sweep_until_terminal(stack, [waiting, paused])

            assert rows[waiting].status == "completed", (rows[waiting].error, stack.logs())
            assert _entries(waiting)["after"]["status"] == "success"
            assert rows[paused].status == "completed", (rows[paused].error, stack.logs())
            reviewed_entries = _entries(paused)
            assert reviewed_entries["yes"]["status"] == "success"
            assert reviewed_entries.get("no", {}).get("status") in (None, "skipped")
            events = event_log_for_app().read_after(stream_key(waiting), 0, count=10_000)
            assert sum(1 for e in events if e["event"] == "node.started" and e.get("node_id") == "after") == 1
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # the log survived, no gap
            results = _resumption_results(waiting)
            assert list(results.values()).count("completed") == 1, results  # exactly one resumption won
            print(f"redis restart (b): timer job in the restored AOF: {timer_survived}; resumptions: {results}")
    finally:
        web.stop()
