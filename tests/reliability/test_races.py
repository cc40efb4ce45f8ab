"""Issue "Crash-proof execution and security hardening", item 4: races between the API, the
worker, RQ's scheduler and the sweeper, through the real worker process and real HTTP.

- A stop racing an execution's completion: the execution ends ``cancelled`` or ``completed``
  and never changes after that; its log has exactly one ``execution.finished``, last.
- A timed wait resumed by RQ's scheduler and by several concurrent sweeps (two workers): the
  next node runs once.
- An approval decision racing a stop of the paused execution: nothing follows its finish.
- (Twenty concurrent approve/reject calls on one approval -> exactly one 200 is covered by
  ``tests/nodes/test_approval.py::test_twenty_concurrent_decisions_exactly_one_wins``.)

Waits follow the event log or the RQ job with generous bounds (safety nets only); nothing here
asserts how long anything takes."""
from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from flask import Flask
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job

from athena.runs.eventlog import event_log_for_app, stream_key
from athena.services.resume import timer_job_id
from athena.runs.lifecycle import ALLOWED
from athena.timeutil import utcnow
from jobs.sweeper import sweep
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes import (
    API, TERMINAL, chain, clean_rq, edge, entries, execution_row, fetch, manual, metadata, node, set_node, start,
    wait_status,
)
from tests.support.servers import WorkerProcess, wait_for

__all__ = ["clean_rq"]  # the autouse fixture: no scheduled job outlives its test

SAFETY = 60.0  # seconds; a bound on waits, never an assertion about speed
STOP_TRIALS = 30
STOP_STAGGER_MS = 3  # trial i stops (i % 20) * 3 ms after its creation: 0..57 ms
RESUME_TRIALS = 6
DECISION_TRIALS = 32
DECISION_STAGGER = 0.0005  # trial i stops (i % 8) * 0.5 ms after the decision is sent
SWEEP_STAGGER = 0.3  # trial i starts sweeping i * 0.3 s after wait_till
SWEEPERS = 6
RESUME_OUTCOMES = ("completed", "stale resume", "not runnable", "already completed",
                   "busy: another worker holds the lease")


def log_events(uuid: str) -> list[dict[str, Any]]:
    return event_log_for_app().read_after(stream_key(uuid), 0, count=100_000)


def assert_log_is_sound(uuid: str) -> list[dict[str, Any]]:
    """seq 1..n without gaps; statuses follow ALLOWED; one execution.finished, and it is last."""
    events = log_events(uuid)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1)), (uuid, seqs)
    statuses = [e["status"] for e in events if e["event"] == "execution.status"]
    assert statuses[:1] == ["pending"], (uuid, statuses)
    for before, after in zip(statuses, statuses[1:]):
        assert after in ALLOWED[before], (uuid, f"illegal {before} -> {after}", statuses)
    finished = [i for i, e in enumerate(events) if e["event"] == "execution.finished"]
    assert len(finished) == 1, (uuid, [(e["seq"], e["event"], e.get("status")) for e in events])
    assert finished[0] == len(events) - 1, (uuid, "an event after execution.finished",
                                            [(e["seq"], e["event"]) for e in events[finished[0]:]])
    assert events[-1]["status"] == statuses[-1] and statuses[-1] in TERMINAL, (uuid, statuses)
    return events


def follow_until_finished(uuid: str, worker) -> dict[str, Any]:
    for event in event_log_for_app().follow(stream_key(uuid), 0, SAFETY):
        if event["event"] == "execution.finished":
            return event
    raise AssertionError(f"no execution.finished for {uuid}:\n{worker.read_log()[-3000:]}")


def job_over(job_id: str, redis_conn, worker) -> None:
    def over() -> bool:
        try:
            job = Job.fetch(job_id, connection=redis_conn)
        except Exception:  # noqa: BLE001 - cancelled before it ran and deleted: nothing left to run
            return True
        return job.get_status() in ("finished", "failed", "canceled", "stopped")

    wait_for(over, timeout=SAFETY, message=f"job {job_id} to end:\n{worker.read_log()[-3000:]}")


# -- concurrent stop and completion ---------------------------------------------------------

def _short_workflow():
    user = make_user()
    nodes = [manual(), set_node("a", {"x": 1}), set_node("b", {"y": 2}), set_node("c", {"z": 3})]
    workflow = make_workflow(make_workspace(user), user, nodes=nodes, edges=chain("start", "a", "b", "c"))
    return workflow, headers_for(user)


def _one_stop_race(trial: int, live_server, workflow, headers, redis_conn, worker) -> str:
    """Create over HTTP, then two threads stop it at staggered moments while the worker runs it."""
    http = requests.Session()
    created = threading.Event()
    box: dict[str, str] = {}
    codes: list[int] = []
    delay = (trial % 20) * STOP_STAGGER_MS / 1000

    def stopper(extra: float) -> None:
        created.wait(SAFETY)  # the uuid is known once the create returns
        time.sleep(delay + extra)  # the stagger: where in the run the stop lands
        response = requests.post(f"{live_server.url}{API}/{box['uuid']}/stop", headers=headers, timeout=SAFETY)
        codes.append(response.status_code)

    threads = [threading.Thread(target=stopper, args=(extra,)) for extra in (0.0, 0.002)]
    for thread in threads:
        thread.start()
    response = http.post(f"{live_server.url}{API}", json={"workflow_uuid": workflow.uuid, "input": {"t": trial}},
                         headers=headers, timeout=SAFETY)
    assert response.status_code == 201, response.text
    box["uuid"] = uuid = response.json()["data"]["uuid"]
    created.set()
    for thread in threads:
        thread.join(SAFETY)
    assert sorted(codes) in ([200, 409], [409, 409]), (trial, codes)  # at most one stop wins

    finished = follow_until_finished(uuid, worker)
    first = fetch_over_http(http, live_server, headers, uuid)
    assert first["status"] == finished["status"] and first["is_finished"] is True, (trial, first, finished)
    assert first["status"] == ("cancelled" if 200 in codes else "completed"), (trial, codes, first["status"])

    job_over(f"athena-exec-{uuid}", redis_conn, worker)  # nothing is left that could write
    time.sleep(0.05)  # "a moment later": late writers (a stop's own final events) have landed
    later = fetch_over_http(http, live_server, headers, uuid)
    assert (later["status"], later["is_finished"], later["stopped_at"]) == \
        (first["status"], True, first["stopped_at"]), (trial, first, later)
    events = assert_log_is_sound(uuid)
    if later["status"] == "completed":
        assert [e["node_id"] for e in events if e["event"] == "node.finished"] == ["start", "a", "b", "c"]
    return later["status"]


def fetch_over_http(http: requests.Session, live_server, headers: dict[str, str], uuid: str) -> dict[str, Any]:
    response = http.get(f"{live_server.url}{API}/{uuid}", headers=headers, timeout=SAFETY)
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.slow
def test_concurrent_stop_and_completion(live_server, worker, redis_conn):
    workflow, headers = _short_workflow()
    outcomes: Counter[str] = Counter()
    for trial in range(STOP_TRIALS):
        outcomes[_one_stop_race(trial, live_server, workflow, headers, redis_conn, worker)] += 1
    assert sum(outcomes.values()) == STOP_TRIALS and set(outcomes) <= {"cancelled", "completed"}
    print(f"\nstop vs completion: {STOP_TRIALS} trials -> {outcomes['cancelled']} cancelled (stop won), "
          f"{outcomes['completed']} completed (completion won)")


# -- a decision racing a stop of a paused execution ----------------------------------------

@pytest.mark.slow
def test_decision_racing_a_stop_of_a_paused_execution(client, live_server, worker, redis_conn):
    user = make_user()
    headers = headers_for(user)
    nodes = [manual(), node("review", "approval", {"message": "ok?"}), set_node("yes", {"ok": True})]
    workflow = make_workflow(make_workspace(user), user, nodes=nodes,
                             edges=[edge("start", "review"), edge("review", "yes", "approved")])
    outcomes: Counter[str] = Counter()
    for trial in range(DECISION_TRIALS):
        uuid = start(client, headers, workflow)
        assert wait_status(client, headers, uuid, ("paused", *TERMINAL), worker)["status"] == "paused"
        [approval] = client.get(f"{API}/{uuid}/approvals", headers=headers).json["data"]
        codes: dict[str, int] = {}
        barrier = threading.Barrier(2)

        def call(name: str, path: str) -> None:
            barrier.wait(SAFETY)
            if name == "stop":
                time.sleep(DECISION_STAGGER * (trial % 8))  # staggered: around the decision's commit
            codes[name] = requests.post(f"{live_server.url}{API}/{uuid}/{path}", json={}, headers=headers,
                                        timeout=SAFETY).status_code

        threads = [threading.Thread(target=call, args=("approve", f"approvals/{approval['id']}/approve")),
                   threading.Thread(target=call, args=("stop", "stop"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SAFETY)
        assert codes["approve"] in (200, 409) and codes["stop"] in (200, 409), codes
        assert 200 in codes.values(), codes
        finished = follow_until_finished(uuid, worker)
        assert finished["status"] == ("cancelled" if codes["stop"] == 200 else "completed"), (codes, finished)
        if codes["approve"] == 200:
            job_over(f"athena-approval-{approval['uuid']}", redis_conn, worker)  # the resumption ran
        time.sleep(0.05)  # "a moment later"
        assert_log_is_sound(uuid)
        assert fetch(client, headers, uuid)["status"] == finished["status"]
        outcomes[f"approve {codes['approve']} / stop {codes['stop']} -> {finished['status']}"] += 1
    print(f"\ndecision vs stop: {DECISION_TRIALS} trials -> {dict(outcomes)}")


# -- a timed wait resumed by the scheduler and by concurrent sweeps -------------------------

def _sweep_in_threads(app: Flask, count: int) -> list[dict[str, int]]:
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def one() -> None:
        with app.app_context():
            try:
                barrier.wait(SAFETY)
                results.append(sweep(grace_seconds=0))
            except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
                errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY)
    assert not errors, errors
    return results


def _resumption_results(uuid: str, wait_till: datetime, redis_conn, worker) -> dict[str, str | None]:
    """What the scheduler's timer job and the sweeper's job returned (None: that job never existed)."""
    stamp = int(wait_till.replace(tzinfo=timezone.utc).timestamp())
    results: dict[str, str | None] = {}
    for name, job_id in (("timer", timer_job_id(uuid, "w", wait_till)), ("sweep", f"athena-sweep-{uuid}-w-{stamp}")):
        try:
            Job.fetch(job_id, connection=redis_conn)
        except NoSuchJobError:
            results[name] = None
            continue
        job_over(job_id, redis_conn, worker)
        results[name] = Job.fetch(job_id, connection=redis_conn).return_value()
    return results


@pytest.fixture(scope="module")
def second_worker(test_settings, worker, redis_conn):
    """Another real worker process on the queue: resumption jobs can then really run at once."""
    extra = WorkerProcess(test_settings["database_url"], test_settings["redis_url"], test_settings["queue"],
                          test_settings["tmp"] / "worker-2.log",
                          extra_env={"ATHENA_HTTP_ALLOWLIST": "127.0.0.1", "ATHENA_LEASE_SECONDS": "2"}).start()
    queue = Queue(test_settings["queue"], connection=redis_conn)
    wait_for(lambda: Worker.count(queue=queue) >= 2, timeout=SAFETY, message="a second worker")
    yield extra
    extra.stop()


def _sweep_until_resumed(app: Flask, uuid: str, start_at: datetime) -> int:
    """Rounds of concurrent sweeps from ``start_at`` until the execution is no longer waiting."""
    wait_for(lambda: utcnow() >= start_at, timeout=SAFETY, interval=0.005, message="the sweep moment")
    swept = 0
    for _ in range(int(SAFETY / 0.01)):
        swept += sum(r["timers"] for r in _sweep_in_threads(app, SWEEPERS))
        if execution_row(uuid).status != "waiting":
            return swept
        time.sleep(0.01)
    raise AssertionError(f"{uuid} was never resumed")


@pytest.mark.slow
def test_resume_runs_once_when_scheduler_and_sweeper_both_fire(app, client, worker, second_worker, redis_conn):
    user = make_user()
    headers = headers_for(user)
    nodes = [manual(), node("w", "wait", {"seconds": 1}), set_node("after", {"done": True})]
    workflow = make_workflow(make_workspace(user), user, nodes=nodes, edges=chain("start", "w", "after"))
    enqueued: list[int] = []
    outcomes: list[dict[str, str | None]] = []
    for trial in range(RESUME_TRIALS):
        uuid = start(client, headers, workflow, {"trial": trial})
        waiting = wait_status(client, headers, uuid, ("waiting", *TERMINAL), worker)
        assert waiting["status"] == "waiting", waiting
        wait_till = execution_row(uuid).wait_till
        # RQ's scheduler moves the timer job to the queue in the second after wait_till (rounded
        # up: it polls once a second); the sweeps start at staggered moments around that.
        enqueued.append(_sweep_until_resumed(app, uuid, wait_till + timedelta(seconds=trial * SWEEP_STAGGER)))

        done = wait_status(client, headers, uuid, TERMINAL, worker)
        assert done["status"] == "completed", done
        results = _resumption_results(uuid, wait_till, redis_conn, worker)
        assert results["timer"] is not None, results  # RQ's scheduler fired its job too
        # Each job lost or won (concurrent sweeps may enqueue one sweep job id twice: its last
        # run's result is what is kept); the log below proves exactly one of them ran the node.
        assert set(results.values()) <= {None, *RESUME_OUTCOMES}, results
        outcomes.append(results)
        events = assert_log_is_sound(uuid)
        started = Counter(e["node_id"] for e in events if e["event"] == "node.started")
        assert started == {"start": 1, "w": 2, "after": 1}, (trial, started)  # w: first run + the resume
        statuses = [e["status"] for e in events if e["event"] == "execution.status"]
        assert statuses == ["pending", "running", "waiting", "running", "completed"], (trial, statuses)
        finished = [(e["node_id"], e["status"]) for e in events if e["event"] == "node.finished"]
        # the wait's suspension is checkpointed as a finished step ("waiting"), then its resume
        assert finished == [("start", "success"), ("w", "waiting"), ("w", "success"), ("after", "success")], \
            (trial, finished)
        # processed_count counts every node that finished (success/error) once, not suspensions:
        # a second resume would show
        ran = [step for step in finished if step[1] in ("success", "error")]
        assert metadata(done)["processed_count"] == len(ran), (metadata(done), finished)
        assert {k: e["status"] for k, e in entries(done).items()} == dict.fromkeys(("start", "w", "after"), "success")
        assert fetch(client, headers, uuid)["status"] == "completed"  # and it stays so
    print(f"\nresume races: {RESUME_TRIALS} trials, 2 workers; sweep resumptions enqueued per trial {enqueued} "
          f"({SWEEPERS} concurrent sweeps per round); 'after' ran once in each; job results: {outcomes}")
