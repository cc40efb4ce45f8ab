"""Resumption of suspended executions: timed waits (RQ's scheduler, the sweeper), approvals,
parents waiting on a child; and the start of child executions (sub_workflow nodes).

Idempotency: every resumption is an RQ job ``run_execution(execution_id, {node_id: payload})``.
Before the ``waiting|paused -> running`` compare-and-set, the job *claims* the suspension with
:func:`claim` in the same transaction: a guarded UPDATE of the execution's data row that only
matches while the execution is suspended at ``node_id``. The row stays locked until the commit,
so of any number of jobs resuming the same suspension exactly one wins; the others find the
execution running, finished, or suspended at another node, and exit without side effects."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from flask import current_app
from rq.job import Job
from sqlalchemy import select, update
from sqlalchemy.orm import aliased

from athena.engine import NodeError
from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution, WorkflowExecutionData
from athena.redis_client import get_queue, get_redis
from athena.services.executions import create_execution
from athena.timeutil import iso, to_naive_utc, utcnow

RESUME_FUNCTION = "jobs.run_execution.run_execution"
MAX_CHILD_DEPTH = 5
SWEEP_BATCH = 500


def _job_options() -> dict[str, Any]:
    return {"job_timeout": current_app.config["JOB_TIMEOUT_SECONDS"], "result_ttl": 300,
            "failure_ttl": 7 * 24 * 3600}


def timer_job_id(execution_uuid: str, node_id: str, when: datetime) -> str:
    return f"athena-resume-{execution_uuid}-{node_id}-{int(when.replace(tzinfo=timezone.utc).timestamp())}"


def enqueue_resume(execution_id: int, node_id: str, payload: dict[str, Any], job_id: str) -> None:
    get_queue().enqueue(RESUME_FUNCTION, execution_id, {node_id: payload}, job_id=job_id, **_job_options())


def schedule_resume(execution_id: int, execution_uuid: str, node_id: str, wait_till: datetime) -> None:
    """Enqueue the resumption at ``wait_till`` with RQ's scheduler (the worker runs it).

    RQ's scheduled registry keeps whole seconds (truncated), so the job is scheduled at the next
    whole second: it never fires before ``wait_till``."""
    naive = to_naive_utc(wait_till)
    fire_at = naive.replace(microsecond=0) + (timedelta(seconds=1) if naive.microsecond else timedelta(0))
    get_queue().enqueue_at(fire_at.replace(tzinfo=timezone.utc), RESUME_FUNCTION, execution_id,
                           {node_id: {"reason": "timer", "wait_till": iso(naive)}},
                           job_id=timer_job_id(execution_uuid, node_id, naive), **_job_options())


def claim(execution_id: int, node_ids: list[str]) -> bool:
    """Lock the execution's data row iff the execution is suspended at one of ``node_ids``.

    Call inside the transaction that then moves the execution to ``running``."""
    result = db.session.execute(
        update(WorkflowExecutionData)
        .where(WorkflowExecutionData.workflow_execution_id == execution_id,
               WorkflowExecutionData.meta["running_node"].as_string().in_(node_ids))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def suspended_node(execution: WorkflowExecution) -> str | None:
    data = execution.execution_data
    return (data.meta or {}).get("running_node") if data is not None else None


# -- children ----------------------------------------------------------------------------------
def child_payload(child: WorkflowExecution) -> dict[str, Any]:
    return {"child_uuid": child.uuid, "status": child.status, "output": child.output, "error": child.error}


def notify_parent(execution_id: int, *, unless_pending: bool = False) -> bool:
    """A finished child resumes its parent if that parent is waiting on this child's node."""
    child = db.session.get(WorkflowExecution, execution_id)
    if child is None or child.parent_execution_id is None or child.parent_node_id is None:
        return False
    if not child.is_finished:
        return False
    parent = db.session.get(WorkflowExecution, child.parent_execution_id)
    if parent is None or parent.status != "waiting" or suspended_node(parent) != child.parent_node_id:
        return False  # not waiting for it (wait=false, stopped, or already resumed)
    job_id = f"athena-resume-{parent.uuid}-{child.uuid}"
    if unless_pending and _job_pending(job_id):
        return False
    enqueue_resume(parent.id, child.parent_node_id, child_payload(child), job_id=job_id)
    return True


def resume_if_child_finished(execution_id: int, node_id: str) -> bool:
    """After a parent suspends on a child: the child may have finished first (another worker)."""
    child = db.session.execute(
        select(WorkflowExecution).where(WorkflowExecution.parent_execution_id == execution_id,
                                        WorkflowExecution.parent_node_id == node_id)
        .order_by(WorkflowExecution.id.desc()).limit(1)
    ).scalar_one_or_none()
    if child is None or not child.is_finished:
        return False
    return notify_parent(child.id)


def _depth(execution: WorkflowExecution) -> int:
    """How many ancestors ``execution`` has (stops counting past the limit)."""
    depth, parent_id = 0, execution.parent_execution_id
    while parent_id is not None and depth <= MAX_CHILD_DEPTH:
        depth += 1
        parent_id = db.session.execute(
            select(WorkflowExecution.parent_execution_id).where(WorkflowExecution.id == parent_id)
        ).scalar_one_or_none()
    return depth


def start_child(parent_id: int, node_id: str, workflow_uuid: str, input: Any, wait: bool) -> dict[str, Any]:  # noqa: A002
    """Create and enqueue a child execution (mode ``child``) of a workflow of the same workspace.

    Idempotent per (parent, node): a node re-run after a crash gets the child it already started."""
    parent = db.session.get(WorkflowExecution, parent_id)
    if parent is None:
        raise NodeError("the parent execution no longer exists", retryable=False)
    existing = db.session.execute(
        select(WorkflowExecution).where(WorkflowExecution.parent_execution_id == parent_id,
                                        WorkflowExecution.parent_node_id == node_id)
        .order_by(WorkflowExecution.id.desc()).limit(1)
    ).scalar_one_or_none()
    if existing is not None:
        return {"uuid": existing.uuid, "id": existing.id, "status": existing.status, "wait": wait}
    if _depth(parent) >= MAX_CHILD_DEPTH:
        raise NodeError(f"sub-workflow depth limit ({MAX_CHILD_DEPTH}) reached", retryable=False)
    workflow = db.session.execute(
        select(Workflow).where(Workflow.uuid == str(workflow_uuid), Workflow.workspace_id == parent.workspace_id,
                               Workflow.deleted_at.is_(None))
    ).scalar_one_or_none()
    if workflow is None:
        raise NodeError(f"workflow {workflow_uuid} not found in this workspace", retryable=False)
    if not workflow.is_active:
        raise NodeError(f"workflow {workflow_uuid} is inactive", retryable=False)
    user = db.session.get(User, parent.user_id) if parent.user_id else None
    child = create_execution(workflow, user, mode="child", input=input, parent=parent, parent_node_id=node_id)
    return {"uuid": child.uuid, "id": child.id, "status": child.status, "wait": wait}


# -- sweeper -----------------------------------------------------------------------------------
def _job_pending(job_id: str) -> bool:
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except Exception:  # noqa: BLE001 - no such job
        return False
    return job.get_status(refresh=False) in ("queued", "started", "deferred")


def resume_overdue(grace_seconds: float) -> int:
    """Enqueue the resumption of every suspended execution whose ``wait_till`` passed more than
    ``grace_seconds`` ago (its scheduled job was lost, e.g. Redis was flushed)."""
    limit = utcnow() - timedelta(seconds=grace_seconds)
    rows = db.session.execute(
        select(WorkflowExecution.id, WorkflowExecution.uuid, WorkflowExecution.wait_till,
               WorkflowExecutionData.meta)
        .join(WorkflowExecutionData, WorkflowExecutionData.workflow_execution_id == WorkflowExecution.id)
        .where(WorkflowExecution.status.in_(("waiting", "paused")), WorkflowExecution.wait_till.is_not(None),
               WorkflowExecution.wait_till <= limit, WorkflowExecution.deleted_at.is_(None))
        .order_by(WorkflowExecution.wait_till).limit(SWEEP_BATCH)
    ).all()
    count = 0
    for execution_id, uuid, wait_till, meta in rows:
        node_id = (meta or {}).get("running_node")
        if not node_id:
            continue
        sweep_id = f"athena-sweep-{uuid}-{node_id}-{int(wait_till.replace(tzinfo=timezone.utc).timestamp())}"
        if _job_pending(sweep_id) or _job_pending(timer_job_id(uuid, node_id, wait_till)):
            continue  # a resumption is already queued or running
        enqueue_resume(execution_id, node_id, {"reason": "timer", "wait_till": iso(wait_till), "source": "sweeper"},
                       job_id=sweep_id)
        count += 1
    return count


def resume_orphaned_parents() -> int:
    """Parents still waiting on a child that has finished (the notification was lost)."""
    parent = aliased(WorkflowExecution)
    children = db.session.execute(
        select(WorkflowExecution.id)
        .join(parent, parent.id == WorkflowExecution.parent_execution_id)
        .where(parent.status == "waiting", parent.wait_till.is_(None), parent.deleted_at.is_(None),
               WorkflowExecution.is_finished.is_(True), WorkflowExecution.parent_node_id.is_not(None))
        .limit(SWEEP_BATCH)
    ).scalars().all()
    return sum(1 for child_id in children if notify_parent(child_id, unless_pending=True))
