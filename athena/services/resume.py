"""Resumption of suspended executions: timed waits via RQ's scheduler, parents of children."""
from __future__ import annotations

from datetime import datetime, timezone

from athena.extensions import db
from athena.models import WorkflowExecution
from athena.redis_client import get_queue

RESUME_FUNCTION = "jobs.run_execution.run_execution"


def schedule_resume(execution_id: int, execution_uuid: str, node_id: str, wait_till: datetime) -> None:
    """Enqueue the resumption at ``wait_till`` with RQ's scheduler (the worker runs it)."""
    when = wait_till.replace(tzinfo=timezone.utc) if wait_till.tzinfo is None else wait_till
    get_queue().enqueue_at(when, RESUME_FUNCTION, execution_id, {node_id: {"reason": "timer"}},
                           job_id=f"athena-resume-{execution_uuid}-{node_id}-{int(when.timestamp())}")


def notify_parent(execution_id: int) -> None:
    """A finished child resumes its waiting parent (sub_workflow nodes)."""
    child = db.session.get(WorkflowExecution, execution_id)
    if child is None or child.parent_execution_id is None or child.parent_node_id is None:
        return
    parent = db.session.get(WorkflowExecution, child.parent_execution_id)
    if parent is None or parent.status != "waiting":
        return
    get_queue().enqueue(RESUME_FUNCTION, parent.id,
                        {child.parent_node_id: {"child_uuid": child.uuid, "status": child.status,
                                                "output": child.output, "error": child.error}},
                        job_id=f"athena-resume-{parent.uuid}-{child.uuid}")
