"""Crash recovery: nothing a worker was doing is lost when it dies or shuts down.

- A ``running`` execution whose lease expired (its worker died) is continued by another worker
  from its last checkpoint; the node that was running when the worker died runs again
  (at-least-once per node), every node checkpointed before it does not. After
  ``EXECUTION_MAX_CRASHES`` losses the execution fails with the reason in its metadata.
- A ``pending`` execution whose RQ job vanished (Redis restarted without persistence, or the
  enqueue failed while Redis was unreachable), or whose job was stranded by a worker killed
  while dequeuing it, is enqueued again.
- A stop of a ``running`` execution whose worker is gone (its lease expired) gets its final
  events from the stop itself (``executions.stop_execution``), not from here."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from rq import Queue
from rq.job import Job
from sqlalchemy import select, update

from athena.extensions import db
from athena.models import WorkflowExecution, WorkflowExecutionData
from athena.redis_client import get_queue, get_redis
from athena.runs import lifecycle
from athena.runs.sinks import execution_events
from athena.services.executions import enqueue, job_id_for
from athena.services.leases import lease_alive
from athena.timeutil import iso, to_naive_utc, utcnow

CONTINUE_FUNCTION = "jobs.run_execution.continue_execution"
BATCH = 200
log = logging.getLogger(__name__)


def _job_waiting(job_id: str | bytes | None) -> bool:
    """Whether the RQ job will still run without the sweeper's help: really in its queue
    (``LPOS``), in its scheduled or deferred registry, or taken by a worker moments ago (being
    handed over, or ``started`` recently: the worker may not hold the lease yet). A job long
    "started" by a dead worker is not in flight, nor is one stranded in the queue's
    intermediate list (see :func:`_handing_over`)."""
    if not job_id:
        return False
    job_id = job_id.decode() if isinstance(job_id, bytes) else job_id
    redis = get_redis()
    try:
        job = Job.fetch(job_id, connection=redis)
    except Exception:  # noqa: BLE001 - no such job
        return False
    status = job.get_status(refresh=False)
    queue = Queue(job.origin, connection=redis)
    if status == "queued":  # also while a worker dequeues it: the status changes when it starts
        return queue.get_job_position(job_id) is not None or _handing_over(queue, job)
    if status == "scheduled":
        return job_id in queue.scheduled_job_registry
    if status == "deferred":
        return job_id in queue.deferred_job_registry
    # Taken by a worker but maybe not yet holding the lease (a fresh worker builds its app first).
    in_flight = timedelta(seconds=2 * current_app.config["EXECUTION_LEASE_SECONDS"] + 5)
    return status == "started" and job.started_at is not None and \
        to_naive_utc(job.started_at) >= utcnow() - in_flight


def handover_key(job: Job) -> str:
    """When the sweeper first saw this enqueueing of ``job`` in its queue's intermediate list
    (the enqueue time is part of the key: a job enqueued again under the same id starts afresh)."""
    enqueued = job.enqueued_at.timestamp() if job.enqueued_at else 0
    return f"athena:rq:handover:{job.id}:{enqueued:.6f}"


def _handing_over(queue: Queue, job: Job) -> bool:
    """A worker dequeues a job by moving it from the queue to ``<queue key>:intermediate``
    (``BLMOVE``), then marks it started and removes it from that list, a few milliseconds later.
    Meanwhile its status still says ``queued``. A worker killed in between leaves it there:
    RQ's own cleanup fails it only 10-20 minutes later. So a job counts as being handed over
    for ``EXECUTION_LEASE_SECONDS`` after a sweep first saw it in that list (what a live worker
    is given to take the lease of a job it started); after that it is stranded: it is taken out
    of the list (so that RQ's cleanup never fails the job enqueued again under the same id) and
    is not waiting."""
    intermediate = queue.intermediate_queue
    if job.id not in intermediate.get_job_ids():
        return False  # in no list at all: lost (e.g. with Redis' last second before a crash)
    redis = get_redis()
    window = float(current_app.config["EXECUTION_LEASE_SECONDS"])
    key = handover_key(job)
    now = utcnow().timestamp()
    if redis.set(key, now, nx=True, ex=max(3600, int(window * 10))):
        return True  # first seen now
    first_seen = float(redis.get(key) or now)
    if now - first_seen < window:
        return True
    intermediate.remove(job.id)
    redis.delete(key)
    log.warning("recovery: job %s was left in %s by a worker that stopped while dequeuing it; "
                "queueing its work again", job.id, intermediate.key)
    return False


def continuation_key(execution_uuid: str) -> str:
    return f"athena:exec:{execution_uuid}:continuation"


def enqueue_continuation(execution_id: int, execution_uuid: str, *, reason: str, attempt: int = 0) -> None:
    """Queue a job that continues a ``running`` execution from its checkpoint; remembered so the
    sweeper does not mistake an execution waiting in the queue for an orphan."""
    job_id = f"athena-continue-{execution_uuid}-{reason}-{attempt}-{int(utcnow().timestamp() * 1000)}"
    get_redis().set(continuation_key(execution_uuid), job_id, ex=24 * 3600)
    get_queue().enqueue(CONTINUE_FUNCTION, execution_id, job_id=job_id,
                        job_timeout=current_app.config["JOB_TIMEOUT_SECONDS"], result_ttl=300,
                        failure_ttl=7 * 24 * 3600)


def _record_crash(execution_id: int, crashes: int, reason: str) -> None:
    data = db.session.execute(
        select(WorkflowExecutionData).where(WorkflowExecutionData.workflow_execution_id == execution_id)
    ).scalar_one_or_none()
    if data is not None:
        meta = dict(data.meta or {})
        meta.update(crash_count=crashes, last_crash_at=iso(utcnow()), last_crash_reason=reason)
        data.meta = meta


def recover_orphans(grace_seconds: float) -> dict[str, int]:
    """Continue or fail every ``running`` execution whose worker is gone (lease expired)."""
    limit = utcnow() - timedelta(seconds=grace_seconds)
    rows = db.session.execute(
        select(WorkflowExecution.id, WorkflowExecution.uuid, WorkflowExecution.crash_count)
        .where(WorkflowExecution.status == "running", WorkflowExecution.updated_at <= limit,
               WorkflowExecution.deleted_at.is_(None))
        .order_by(WorkflowExecution.updated_at).limit(BATCH)
    ).all()
    redis = get_redis()
    continued = failed = 0
    max_crashes = current_app.config["EXECUTION_MAX_CRASHES"]
    for execution_id, uuid, crashes in rows:
        if lease_alive(redis, uuid) or _job_waiting(redis.get(continuation_key(uuid))):
            continue
        # Claim this recovery: only one sweeper wins the crash_count compare-and-set.
        claimed = db.session.execute(
            update(WorkflowExecution)
            .where(WorkflowExecution.id == execution_id, WorkflowExecution.status == "running",
                   WorkflowExecution.crash_count == crashes)
            .values(crash_count=crashes + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount == 1
        if not claimed:
            db.session.rollback()
            continue
        reason = "the worker running this execution stopped responding (lease expired)"
        _record_crash(execution_id, crashes + 1, reason)
        if crashes + 1 > max_crashes:
            message = f"Execution failed: its worker was lost {crashes + 1} times ({reason})."
            lifecycle.transition(execution_id, "failed", only_from=("running",), error=message)
            db.session.commit()
            _final_events(execution_id, "failed", message)
            failed += 1
            continue
        db.session.commit()
        enqueue_continuation(execution_id, uuid, reason="crash", attempt=crashes + 1)
        log.warning("recovery: execution %s lost its worker; continuing from the checkpoint", uuid)
        continued += 1
    return {"continued": continued, "failed": failed}


def requeue_lost_pending(grace_seconds: float) -> int:
    """``pending`` executions whose job is gone from Redis are enqueued again."""
    limit = utcnow() - timedelta(seconds=grace_seconds)
    executions = db.session.execute(
        select(WorkflowExecution).where(WorkflowExecution.status == "pending",
                                        WorkflowExecution.created_at <= limit,
                                        WorkflowExecution.deleted_at.is_(None)).limit(BATCH)
    ).scalars().all()
    count = 0
    for execution in executions:
        if _job_waiting(job_id_for(execution)) or lease_alive(get_redis(), execution.uuid):
            continue
        get_redis().delete(f"rq:job:{job_id_for(execution)}")  # a finished/failed leftover would block the id
        enqueue(execution)
        count += 1
    return count


def _final_events(execution_id: int, status: str, error: str | None) -> None:
    lifecycle.close(execution_events(db.session.get(WorkflowExecution, execution_id)), status, error=error)
