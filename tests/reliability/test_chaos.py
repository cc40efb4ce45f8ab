"""Issue 15, must show: a burst of webhook executions (webhook -> set -> http_request -> set)
survives SIGKILLs of workers, one of them exactly at a job hand-over, and a restart of Redis.

A stack of its own (``tests/reliability/test_redis_restart.py``): a persistent Redis (AOF),
three worker processes on a private queue (lease 2 s, sweeper every 3 s, grace 1 s: the
environment :class:`Stack` starts them with), the real app served over HTTP in this process,
and a local HTTP target that records when each request of each execution arrived. Recovery
is left to the workers' own sweepers: this test never sweeps.

1. A burst of 40 calls; the worker in the middle of one execution's HTTP request is killed.
2. A worker is killed at a job hand-over: the other two are busy (holding requests), the idle
   one is frozen (SIGSTOP) while it waits for a job in RQ's ``BLMOVE``; a webhook call's job is
   then moved by Redis to ``<queue>:intermediate`` for it, and the worker is killed there. The
   job is in no queue and its status still says ``queued`` (the state that left executions
   ``pending`` for 10-20 minutes).
3. Redis is killed (SIGKILL) while two executions are inside their HTTP request and others
   are queued; webhook calls made during the outage answer 202 with ``pending`` executions;
   Redis restarts on its data directory.
4. Every worker process that lived through the restart is the same process and takes a job:
   as many held executions as workers run at the same time.

Then: every execution completed, each within the documented bound of the crash it went
through (docs/reliability.md, computed from the workers' settings); each node once in its
data; each execution's request made once, or twice when it was in flight at a crash (its first
arrival before the crash, its second after); no answer other than 202."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
import requests
from rq import Queue, Worker
from rq.job import Job

from athena.extensions import db
from athena.models import WorkflowExecution
from athena.redis_client import get_redis
from jobs.worker import RECONNECT_MAX_SECONDS
from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.reliability.support import RecordingTarget, webhook_http_graph
from tests.reliability.test_redis_restart import Stack, stack_factory
from tests.support.servers import LiveServer, WorkerProcess, wait_for

WORKERS = 3
BURST = 40
AFTER_RESTART = 16
DURING_OUTAGE = 5
RUN_SLACK = 5.0  # seconds: running the sweep job, then the execution itself, once recovery is due
__all__ = ["stack_factory"]  # the fixture (a stack of its own, the session worker paused meanwhile)

SAFETY = 60.0  # bound of the waits that are not about recovery (a safety net, not an assertion)
NODES = ["hook", "before", "call", "after"]


class Bounds:
    """The documented recovery bounds (docs/reliability.md, "Crash detection and continuation",
    "Redis restart"), from the settings the stack's workers run with."""

    def __init__(self, stack: Stack) -> None:
        env = stack.workers[0].env
        lease, interval = float(env["ATHENA_LEASE_SECONDS"]), float(env["ATHENA_SWEEPER_INTERVAL"])
        grace = float(env["ATHENA_SWEEPER_GRACE"])
        # a running execution whose worker died: its lease expires, the next sweep continues it
        self.worker_killed = lease + grace + interval + RUN_SLACK
        # a pending one whose job was stranded in the intermediate list: first seen by a sweep,
        # queued again by the first sweep one lease later
        self.handover = grace + lease + 2 * interval + RUN_SLACK
        # after Redis is back: the workers reconnect, a job taken just before the outage counts
        # as in flight for 2 leases + 5 s, then a sweep (lost enqueues, expired leases)
        self.redis_back = RECONNECT_MAX_SECONDS + (2 * lease + 5) + grace + 2 * interval + RUN_SLACK


class Chaos:
    def __init__(self, stack: Stack, target: RecordingTarget, web: LiveServer, workflow_uuid: str,
                 headers: dict[str, str]) -> None:
        self.stack, self.target, self.web = stack, target, web
        self.url = f"{web.url}/api/v1/workflows/{workflow_uuid}/webhook"
        self.headers = headers
        self.uuids: dict[str, str] = {}  # key (the target path) -> execution uuid
        self.answers: dict[str, int] = {}  # key -> HTTP status of the webhook call
        self.crashes: list[float] = []  # monotonic instants of the kills (workers, Redis)

    # -- webhook calls -----------------------------------------------------------------------
    def call(self, key: str, kind: str = "hit", query: str = "") -> dict[str, Any]:
        response = requests.post(self.url + query, json={"kind": kind, "key": key}, headers=self.headers, timeout=60)
        self.answers[key] = response.status_code
        assert response.status_code == 202, (key, response.status_code, response.text)
        data = response.json()["data"]
        self.uuids[key] = data["uuid"]
        return data

    def burst(self, keys: list[str], holds: set[str]) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: self.call(key, "hold" if key in holds else "hit"), keys))

    # -- workers -----------------------------------------------------------------------------
    def worker_of(self, key: str) -> WorkerProcess:
        """The worker process running the first job of ``key``'s execution (RQ knows its pid)."""
        job = Job.fetch(f"athena-exec-{self.uuids[key]}", connection=get_redis())
        rq_worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + job.worker_name, get_redis())
        [process] = [w for w in self.stack.workers if w.process.pid == rq_worker.pid]
        return process

    def kill(self, worker: WorkerProcess) -> None:
        worker.kill(signal.SIGKILL)
        worker.process.wait(30)
        self.crashes.append(time.monotonic())

    def restart(self, worker: WorkerProcess) -> None:
        """As a supervisor would (docker compose: restart: unless-stopped)."""
        worker.log.close()
        worker.start()

    def pids(self) -> dict[int, int]:
        return {index: w.process.pid for index, w in enumerate(self.stack.workers) if w.alive()}

    # -- waits -------------------------------------------------------------------------------
    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = SAFETY) -> Any:
        try:
            return wait_for(predicate, timeout=timeout, interval=0.1, message=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.stack.logs()}") from None

    def rows(self, keys: list[str]) -> dict[str, WorkflowExecution]:
        db.session.rollback()
        by_uuid = {self.uuids[key]: key for key in keys}
        found = db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid.in_(list(by_uuid)))
                                   ).scalars().all()
        return {by_uuid[row.uuid]: row for row in found}

    def completed(self, keys: list[str], within: float, since: float, what: str) -> None:
        """Every execution of ``keys`` ends ``completed`` at most ``within`` s after ``since``."""
        def done() -> bool:
            rows = self.rows(keys)
            failed = {k: (r.status, r.error) for k, r in rows.items() if r.is_finished and r.status != "completed"}
            assert not failed, failed
            return len(rows) == len(keys) and all(r.status == "completed" for r in rows.values())

        left = within - (time.monotonic() - since)
        try:
            self.wait(done, f"{what}: every execution completed within {within:.0f} s", timeout=max(left, 0.1))
        except AssertionError:
            stuck = {k: r.status for k, r in self.rows(keys).items() if r.status != "completed"}
            raise AssertionError(f"{what}: not completed within the documented bound ({within:.0f} s): "
                                 f"{stuck}\n{self.stack.logs()}") from None


def _blocked_dequeuers() -> int:
    """Clients blocked in RQ's dequeue (BLMOVE): the idle workers."""
    return sum(1 for client in get_redis().client_list()
               if client.get("cmd") == "blmove" and "b" in client.get("flags", ""))


def _kill_at_hand_over(chaos: Chaos, attempt: int) -> str | None:
    """Two workers held in a request, the third frozen while it waits in BLMOVE: a webhook
    call's job goes to the frozen one's intermediate list, and it is killed there. Returns the
    call's key, or None when a periodic job got there first (the worker is killed all the same)."""
    stack, target = chaos.stack, chaos.target
    holds = [f"handover{attempt}-busy{i}" for i in range(WORKERS - 1)]
    for key in holds:
        chaos.call(key, "hold")
    chaos.wait(lambda: set(holds) <= target.holding(), "the other workers to be busy")
    busy = {chaos.worker_of(key) for key in holds}
    [free] = [w for w in stack.workers if w not in busy]
    queue = Queue(stack.queue, connection=get_redis())
    key = f"handover{attempt}"
    try:
        for _ in range(100):
            chaos.wait(lambda: _blocked_dequeuers() == 1, "the free worker to wait for a job")
            os.killpg(free.process.pid, signal.SIGSTOP)
            if _blocked_dequeuers() == 1:
                break
            os.killpg(free.process.pid, signal.SIGCONT)  # it was taking a periodic job: again
            time.sleep(0.05)
        else:
            raise AssertionError("the free worker never stayed in BLMOVE long enough to be frozen there")
        chaos.call(key)
        job_id = f"athena-exec-{chaos.uuids[key]}"
        chaos.wait(lambda: _blocked_dequeuers() == 0, "Redis to hand a job to the frozen worker")
        stranded = job_id in queue.intermediate_queue.get_job_ids()
        chaos.kill(free)
        if stranded:  # the state of the issue: in no queue, status "queued", its worker dead
            assert queue.get_job_position(job_id) is None
            assert Job.fetch(job_id, connection=get_redis()).get_status() == "queued"
        chaos.restart(free)
        return key if stranded else None
    finally:
        for hold in holds:
            target.release(hold)


@pytest.mark.slow
def test_a_burst_survives_killed_workers_and_a_redis_restart(stack_factory):
    stack: Stack = stack_factory(WORKERS)
    bounds = Bounds(stack)
    target = RecordingTarget()
    web = LiveServer(stack.app).start()
    try:
        with stack.app.app_context():
            user = make_user()
            workflow = make_workflow(make_workspace(user), user, *webhook_http_graph(target.url))
            chaos = Chaos(stack, target, web, workflow.uuid, {"Authorization": f"Bearer {token_for(user)}"})

            # 1. a burst; the worker in the middle of one execution's request is killed
            first = [f"burst{i}" for i in range(BURST)]
            chaos.burst(first, holds={"burst0"})
            chaos.wait(lambda: "burst0" in target.holding(), "the held request")
            victim = chaos.worker_of("burst0")
            chaos.kill(victim)
            killed_at = chaos.crashes[-1]
            target.release("burst0")
            chaos.restart(victim)
            chaos.completed(first, bounds.worker_killed, killed_at, "burst with a worker killed mid-request")

            # 2. a worker killed exactly at a job hand-over
            handed: list[str] = []
            stranded = None
            for attempt in range(5):
                key = _kill_at_hand_over(chaos, attempt)
                handed += [k for k in chaos.uuids if k.startswith(f"handover{attempt}")]
                if key is not None:
                    stranded = key
                    break
            assert stranded is not None, "a periodic job took the frozen worker's hand-over 5 times in a row"
            chaos.completed(handed, bounds.handover, chaos.crashes[-1], "worker killed at a job hand-over")

            # 3. Redis killed with executions in flight; calls during the outage
            second = [f"restart{i}" for i in range(AFTER_RESTART)]
            chaos.burst(second, holds={"restart0", "restart1"})
            chaos.wait(lambda: {"restart0", "restart1"} <= target.holding(), "two requests in flight")
            before = chaos.pids()
            stack.kill_redis()
            chaos.crashes.append(time.monotonic())
            during = [f"outage{i}" for i in range(DURING_OUTAGE)]
            for i, key in enumerate(during):
                answer = chaos.call(key, query="?wait=true&timeout=5" if i == 0 else "")
                assert answer["status"] == "pending", answer  # created, queued once Redis is back
            target.release("restart0")
            target.release("restart1")
            chaos.wait(lambda: all(any(e["node_id"] == "call" and e.get("status") == "success"
                                       for e in chaos.rows([k])[k].execution_data.workflow_data or [])
                                   for k in ("restart0", "restart1")),
                       "the requests in flight to be checkpointed while Redis is down")
            time.sleep(3)  # an outage of a few seconds: several reconnection attempts (not an assertion)
            stack.start_redis()
            back_at = time.monotonic()
            chaos.completed(second + during, bounds.redis_back, back_at, "Redis restart")

            # 4. the same worker processes, and each one takes a job
            assert chaos.pids() == before, (before, chaos.pids(), stack.logs())
            last = [f"after{i}" for i in range(WORKERS)]
            chaos.burst(last, holds=set(last))
            chaos.wait(lambda: set(last) <= target.holding(), "every worker to run one held execution")
            assert chaos.pids() == before, (before, chaos.pids(), stack.logs())
            for key in last:
                target.release(key)
            chaos.completed(last, SAFETY, time.monotonic(), "after the restart")

            # every execution: completed, each node once, its request once (twice if in flight at a crash)
            keys = list(chaos.uuids)
            rows = chaos.rows(keys)
            assert all(code == 202 for code in chaos.answers.values()), chaos.answers
            repeated = {}
            for key in keys:
                row = rows[key]
                entries = row.execution_data.workflow_data
                assert row.status == "completed", (key, row.status, row.error)
                assert [e["node_id"] for e in entries] == NODES, (key, entries)
                assert all(e["status"] == "success" for e in entries), (key, entries)
                arrivals = target.arrivals.get(key, [])
                assert 1 <= len(arrivals) <= 2, (key, arrivals)
                if len(arrivals) == 2:  # only a request in flight at a crash is made again
                    assert any(arrivals[0] < crash < arrivals[1] for crash in chaos.crashes), \
                        (key, arrivals, chaos.crashes)
                    repeated[key] = row.crash_count
            print(f"chaos: {len(keys)} executions completed; workers killed: 2 (one at a hand-over, "
                  f"after {attempt + 1} attempt(s)), Redis restarted once; requests repeated "
                  f"(in flight at a crash; crash_count): {repeated or 'none'}; bounds (s): worker killed "
                  f"{bounds.worker_killed:.0f}, hand-over {bounds.handover:.0f}, Redis back {bounds.redis_back:.0f}")
    finally:
        web.stop()
        target.close()
