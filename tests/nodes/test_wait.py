"""The wait node through the real worker: suspend, RQ's scheduler, stop, sweeper, idempotency."""
from __future__ import annotations

import threading
from datetime import timedelta

from rq.job import Job
from sqlalchemy import update

from athena.engine import parse_iso
from athena.extensions import db
from athena.models import WorkflowExecution
from athena.redis_client import get_queue, get_redis
from athena.services.execution_run import ExecutionRun
from athena.services.resume import RESUME_FUNCTION
from athena.timeutil import iso, utcnow
from jobs.sweeper import sweep
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes import (
    API, chain, clean_rq, entries, events, execution_row, job_result, manual, metadata, node, node_starts,
    scheduled_jobs, set_node, start, statuses_seen, wait_status,
)
from tests.support.servers import wait_for

__all__ = ["clean_rq"]  # the autouse fixture


def _setup(wait_parameters: dict):
    user = make_user()
    workspace = make_workspace(user)
    nodes = [manual(), node("w", "wait", wait_parameters), set_node("after", {"done": True})]
    workflow = make_workflow(workspace, user, nodes=nodes, edges=chain("start", "w", "after"))
    return workflow, headers_for(user)


def _timer(uuid: str) -> list[str]:
    """The scheduled resumption (scheduled right after the status turned waiting)."""
    return wait_for(lambda: scheduled_jobs(uuid), timeout=30, message="the scheduled resumption")


def _waiting_without_timer(client, headers, workflow, worker, overdue: float = 1) -> tuple[str, WorkflowExecution]:
    """An execution waiting 60 s whose scheduled resumption is deleted and whose wait_till passed
    ``overdue`` seconds ago (less than the worker's own periodic sweep's grace, unless asked)."""
    uuid = start(client, headers, workflow)
    wait_status(client, headers, uuid, "waiting", worker)
    for job_id in _timer(uuid):
        Job.fetch(job_id, connection=get_redis()).delete()
    assert scheduled_jobs(uuid) == []
    row = execution_row(uuid)
    db.session.execute(update(WorkflowExecution).where(WorkflowExecution.id == row.id)
                       .values(wait_till=utcnow() - timedelta(seconds=overdue)))
    db.session.commit()
    return uuid, execution_row(uuid)


def test_wait_seconds_suspends_then_scheduler_resumes(client, worker):
    workflow, headers = _setup({"seconds": 1})
    uuid = start(client, headers, workflow)

    waiting = wait_status(client, headers, uuid, "waiting", worker)
    meta = metadata(waiting)
    assert waiting["wait_till"] is not None and not waiting["is_finished"]
    assert meta["wait_until"] == waiting["wait_till"]
    assert isinstance(meta["wait_until_timestamp"], int) and meta["wait_started_at"]
    assert "wait_completed_at" not in meta
    assert entries(waiting)["w"]["status"] == "waiting" and "after" not in entries(waiting)
    assert len(_timer(uuid)) == 1  # RQ's scheduler holds the resumption; the job ended

    done = wait_status(client, headers, uuid, ("completed", "failed", "cancelled"), worker)
    assert done["status"] == "completed", done
    meta = metadata(done)
    assert meta["wait_until"] > meta["wait_started_at"]
    # resumed at (or, within the wait node's 1 s early tolerance, just before) wait_until
    assert parse_iso(meta["wait_completed_at"]) >= parse_iso(meta["wait_until"]) - timedelta(seconds=1)
    assert done["wait_till"] is None
    output = entries(done)["w"]["output"]
    assert output["waited_until"] == meta["wait_until"]
    assert parse_iso(output["resumed_at"]) >= parse_iso(output["waited_until"]) - timedelta(seconds=1)
    assert entries(done)["after"]["output"] == {"done": True}
    assert statuses_seen(uuid) == ["pending", "running", "waiting", "running", "completed"]


def test_wait_until_in_the_past_does_not_suspend(client, worker):
    workflow, headers = _setup({"until": "2020-01-01T00:00:00Z"})
    uuid = start(client, headers, workflow)
    done = wait_status(client, headers, uuid, ("completed", "failed", "cancelled"), worker)
    assert done["status"] == "completed", done
    assert "waiting" not in statuses_seen(uuid)
    assert "wait_until" not in metadata(done)
    assert entries(done)["w"]["output"]["waited_until"] == "2020-01-01T00:00:00.000000Z"
    assert entries(done)["after"]["status"] == "success"


def test_stop_while_waiting_and_the_late_resumption_does_nothing(client, worker):
    workflow, headers = _setup({"seconds": 1})
    uuid = start(client, headers, workflow)
    wait_status(client, headers, uuid, "waiting", worker)
    [timer] = _timer(uuid)

    stopped = client.post(f"{API}/{uuid}/stop", headers=headers)
    assert stopped.status_code == 200 and stopped.json["data"]["status"] == "cancelled"

    assert job_result(timer, worker) == "already cancelled"  # the scheduler fired it: a no-op
    data = wait_status(client, headers, uuid, "cancelled", worker)
    assert "after" not in entries(data) and entries(data)["w"]["status"] == "waiting"
    assert node_starts(uuid, "after") == 0
    assert statuses_seen(uuid)[-1] == "cancelled"


def test_sweeper_resumes_a_lost_timer_exactly_once(client, worker):
    workflow, headers = _setup({"seconds": 60})
    uuid, row = _waiting_without_timer(client, headers, workflow, worker)

    assert sweep(grace_seconds=0)["timers"] == 1
    assert sweep(grace_seconds=0)["timers"] == 0  # its resumption is queued, running or done

    done = wait_status(client, headers, uuid, ("completed", "failed", "cancelled"), worker)
    assert done["status"] == "completed", done
    assert node_starts(uuid, "after") == 1 and node_starts(uuid, "w") == 2  # first run + resume
    assert sweep(grace_seconds=0)["timers"] == 0
    assert metadata(done)["wait_completed_at"]


def test_sweep_job_runs_on_the_worker(client, worker):
    workflow, headers = _setup({"seconds": 60})
    uuid, _ = _waiting_without_timer(client, headers, workflow, worker, overdue=60)
    job = get_queue().enqueue("jobs.sweeper.run_sweep")
    assert set(job_result(job.id, worker)) == {"timers", "children", "approvals_cancelled", "continued",
                                            "failed_after_crashes", "requeued"}
    done = wait_status(client, headers, uuid, ("completed", "failed", "cancelled"), worker)
    assert done["status"] == "completed" and node_starts(uuid, "after") == 1


def test_duplicate_resume_jobs_run_the_next_node_once(client, worker):
    workflow, headers = _setup({"seconds": 60})
    uuid, row = _waiting_without_timer(client, headers, workflow, worker)
    payload = {"w": {"reason": "timer", "wait_till": iso(row.wait_till)}}
    ids = [get_queue().enqueue(RESUME_FUNCTION, row.id, payload, job_id=f"dup-{uuid}-{i}").id for i in range(5)]

    results = [job_result(job_id, worker) for job_id in ids]
    assert results.count("completed") == 1, results
    assert all(r in ("completed", "stale resume", "already completed", "not runnable") for r in results), results
    assert node_starts(uuid, "after") == 1
    assert wait_status(client, headers, uuid, "completed", worker)["status"] == "completed"


def test_concurrent_resumptions_in_threads_only_one_wins(app, client, worker):
    workflow, headers = _setup({"seconds": 60})
    uuid, row = _waiting_without_timer(client, headers, workflow, worker)
    payload = {"w": {"reason": "timer", "wait_till": iso(row.wait_till)}}
    results: list[str] = []
    barrier = threading.Barrier(8)

    def resume() -> None:
        with app.app_context():
            barrier.wait()
            try:
                results.append(ExecutionRun(row.id, payload).run())
            finally:
                db.session.remove()

    threads = [threading.Thread(target=resume) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results.count("completed") == 1, results
    assert node_starts(uuid, "after") == 1
    assert [e["status"] for e in events(uuid) if e["event"] == "execution.finished"] == ["completed"]


def test_bad_wait_parameters_are_422_at_workflow_write(client):
    user = make_user()
    workspace = make_workspace(user)
    headers = headers_for(user)
    for parameters in ({"seconds": 5, "until": "2030-01-01T00:00:00Z"}, {}, {"until": "tomorrow"},
                       {"seconds": -1}):
        response = client.post("/api/v1/workflows", headers=headers, json={
            "workspace_uuid": workspace.uuid, "name": "bad wait",
            "nodes": [manual(), node("w", "wait", parameters)], "edges": chain("start", "w")})
        assert response.status_code == 422, (parameters, response.json)
        assert any(key.startswith("nodes.w.parameters") for key in response.json["errors"]), response.json
