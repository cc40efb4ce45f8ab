"""Executions: create and enqueue, stop (with cascade), retry, update, delete."""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

from flask import current_app
from redis.exceptions import RedisError
from rq.job import Job
from sqlalchemy import Update, bindparam, select, update

from athena.errors import Conflict
from athena.extensions import db
from athena.models import (
    TERMINAL_STATUSES, User, Workflow, WorkflowApproval, WorkflowExecution, WorkflowExecutionData,
)
from athena.redis_client import get_queue, get_redis
from athena.runs import lifecycle, wire
from athena.runs.eventlog import event_log_for_app
from athena.runs.lifecycle import STOPPABLE, transition
from athena.runs.sinks import execution_events
from athena.services.leases import lease_alive
from athena.services.secrets import public_variables
from athena.timeutil import utcnow

JOB_FUNCTION = "jobs.run_execution.run_execution"
logger = logging.getLogger(__name__)


def job_id_for(execution: WorkflowExecution) -> str:
    return f"athena-exec-{execution.uuid}"


def enqueue(execution: WorkflowExecution, *, resume: dict | None = None, job_id: str | None = None,
            pipeline: Any = None) -> None:
    config = current_app.config
    get_queue().enqueue(
        JOB_FUNCTION, execution.id, resume, pipeline=pipeline,
        job_id=job_id or job_id_for(execution),
        job_timeout=config["JOB_TIMEOUT_SECONDS"], result_ttl=300, failure_ttl=7 * 24 * 3600,
    )


@functools.cache
def count_trigger() -> Update:
    """Built once (it runs on every trigger): the workflow's trigger count and last use."""
    table = Workflow.__table__
    return (update(table).where(table.c.id == bindparam("workflow_id"))
            .values(trigger_count=table.c.trigger_count + 1, last_used_at=bindparam("now")))


def graph_snapshot(workflow: Workflow) -> dict[str, Any]:
    """What an execution runs: the workflow's graph and public variables as they are now."""
    return {"nodes": workflow.nodes or [], "edges": workflow.edges or [],
            "variables": public_variables(workflow.variables)}


def initial_metadata() -> dict[str, Any]:
    """A new execution's ``metadata``."""
    return {"running_node": None, "execution_time": 0, "processed_count": 0, "error_count": 0,
            "retry_count": 0, "workflow_execution_data_id": None}


def commit_keeping_loaded() -> None:
    """Commit without expiring what the session has loaded (the caller expires what others may
    change; an answer built from it needs no reload)."""
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


# Schedules a function, e.g. ``flask.after_this_request`` (which calls it with the response).
ExpireLater = Callable[[Callable[..., Any]], Any]


def at_once(function: Callable[[], Any]) -> None:
    function()


def create_execution(workflow: Workflow, user: User | None, *, mode: str, input: Any = None,
                     parent: WorkflowExecution | None = None, parent_node_id: str | None = None,
                     retry_of: WorkflowExecution | None = None, entries: list | None = None,
                     snapshot: dict | None = None, start: bool = True, running: bool = False,
                     expire_later: ExpireLater = at_once) -> WorkflowExecution:
    """Create a ``pending`` execution with a snapshot of the graph, count the trigger, enqueue it.
    With ``running`` (an inline run, :mod:`athena.services.inline`) it is created ``running``
    for the caller to run it at once, and not enqueued.

    The execution is returned as created; what workers change afterwards must be read again, so
    it is expired at once, or when ``expire_later`` calls the expiry it is given (the
    API passes ``flask.after_this_request``: its answer shows the execution as created, ``pending``
    even if a worker has started it meanwhile, without reloading it)."""
    now = utcnow()
    execution = WorkflowExecution(
        workflow_id=workflow.id, workspace_id=workflow.workspace_id, user_id=user.id if user else None,
        status="running" if running else "pending", started_at=now if running else None,
        created_at=now, updated_at=now,  # one clock reading: an inline run never starts before it exists
        mode=mode, input=input, retry_of=retry_of.uuid if retry_of else None,
        parent_execution_id=parent.id if parent else None, parent_node_id=parent_node_id,
    )
    execution.workflow = workflow
    execution.execution_data = WorkflowExecutionData(  # both rows in one flush, at the commit
        workflow_data=entries or [], data=snapshot or graph_snapshot(workflow), meta=initial_metadata(),
    )
    db.session.add(execution)
    db.session.connection().execute(count_trigger(), {"workflow_id": workflow.id, "now": now})
    # The uuids, timestamps and defaults are set in Python: the events and the job below need no
    # reload of the execution, its workflow and workspace. What others may change from now on
    # is expired right after (a later read in this session reloads it).
    commit_keeping_loaded()
    # The ``pending`` event and the job go to Redis in one round trip, the event first.
    try:
        pipe = get_redis().pipeline()
        pipe.multi()  # RQ queues its commands in a MULTI: ours must be inside it too
        event_log_for_app().append(execution.uuid, execution.workflow.workspace.uuid, wire.EXECUTION_STATUS,
                                   pipeline=pipe, workflow_uuid=execution.workflow.uuid, status="pending", mode=mode)
        if start and not running:
            enqueue(execution, pipeline=pipe)
        pipe.execute()
    except RedisError as exc:
        # The execution exists (committed above): failing the call now would only make a
        # retrying client create it twice. It stays ``pending``; the sweeper queues it once
        # Redis answers again (recovery.requeue_lost_pending).
        logger.warning("execution %s created but not queued, Redis is unreachable (%s): "
                       "the sweeper will queue it once Redis is back", execution.uuid, exc)
    db.session.expire(workflow, ["trigger_count", "last_used_at", "updated_at"])
    instances = (execution.execution_data, execution)  # both loaded now (a request may detach them)

    def expire(response: Any = None) -> Any:
        for instance in instances:
            if instance is not None and instance in db.session:
                db.session.expire(instance)
        return response

    expire_later(expire)
    return execution


def _cancel_queued_job(execution: WorkflowExecution) -> None:
    try:
        job = Job.fetch(job_id_for(execution), connection=get_redis())
    except Exception:  # noqa: BLE001 - no such job (already run or expired)
        return
    if job.get_status(refresh=False) in ("queued", "scheduled", "deferred"):
        job.cancel()


def stop_execution(execution: WorkflowExecution, *, reason: str = "Stopped by user", cascade: bool = True,
                   _seen: set[int] | None = None) -> WorkflowExecution:
    """Write ``cancelled`` first, then signal. A running job notices at the next node boundary
    (or inside a long node) and emits the final events itself; otherwise they are emitted here."""
    seen = _seen if _seen is not None else set()
    seen.add(execution.id)
    for _ in range(5):
        db.session.refresh(execution)
        previous = execution.status
        if previous in TERMINAL_STATUSES:
            raise Conflict(f"The execution is already {previous} and cannot be stopped.")
        extra = {"requires_human_review": False} if previous == "paused" else {}
        if transition(execution.id, "cancelled", only_from=(previous,), error=reason, **extra):
            if previous == "paused":
                _cancel_pending_approvals(execution.id)
            break
        db.session.rollback()
    else:  # pragma: no cover - status kept changing under us
        raise Conflict("The execution changed state while stopping; try again.")
    db.session.commit()
    db.session.refresh(execution)
    log = event_log_for_app()
    log.request_stop(execution.uuid)
    _cancel_queued_job(execution)
    # A running job emits the final events itself when it notices; a dead or absent one (its
    # lease gone) cannot.
    if previous != "running" or not lease_alive(get_redis(), execution.uuid):
        lifecycle.close(execution_events(execution), "cancelled", error=reason)
    if cascade:
        _cascade_stop(execution, seen)
    return execution


def _cancel_pending_approvals(execution_id: int) -> None:
    now = utcnow()
    db.session.execute(
        update(WorkflowApproval)
        .where(WorkflowApproval.workflow_execution_id == execution_id, WorkflowApproval.status == "pending")
        .values(status="cancelled", decided_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def _cascade_stop(execution: WorkflowExecution, seen: set[int]) -> None:
    related = list(db.session.execute(
        select(WorkflowExecution).where(
            WorkflowExecution.parent_execution_id == execution.id,
            WorkflowExecution.status.in_(STOPPABLE),
        )
    ).scalars())
    if execution.parent_execution_id:
        parent = db.session.get(WorkflowExecution, execution.parent_execution_id)
        # Only a parent that is waiting on this very child (not on a timer, not on another child).
        if (parent is not None and parent.status == "waiting" and parent.execution_data is not None
                and (parent.execution_data.meta or {}).get("running_node") == execution.parent_node_id):
            related.append(parent)
    for other in related:
        if other.id not in seen and other.status in STOPPABLE:
            try:
                stop_execution(other, reason=f"Stopped with execution {execution.uuid}", _seen=seen)
            except Conflict:  # a race on a relative must not undo this stop
                pass


def retry_execution(original: WorkflowExecution, user: User, *,
                    expire_later: ExpireLater = at_once) -> WorkflowExecution:
    """n8n-style retry: reuse the outputs of nodes that succeeded; continue from the failed node
    (``expire_later``: see :func:`create_execution`)."""
    if original.status == "completed":
        raise Conflict("A completed execution cannot be retried.")
    if original.status not in ("failed", "cancelled"):
        raise Conflict(f"Only failed or cancelled executions can be retried (this one is {original.status}).")
    data = original.execution_data
    reused = [entry for entry in (data.workflow_data if data else []) if entry.get("status") == "success"]
    snapshot = data.data if data and data.data else None
    return create_execution(original.workflow, user, mode="retry", input=original.input, retry_of=original,
                            entries=reused, snapshot=snapshot, expire_later=expire_later)


def update_execution(execution: WorkflowExecution, changes: dict) -> WorkflowExecution:
    for key, value in changes.items():
        setattr(execution, key, value)
    db.session.commit()
    return execution


def delete_execution(execution: WorkflowExecution) -> None:
    if not execution.is_finished:
        raise Conflict(f"The execution is {execution.status}: stop it before deleting it.")
    now = utcnow()
    execution.deleted_at = now
    if execution.execution_data is not None:
        execution.execution_data.deleted_at = now
    db.session.commit()

