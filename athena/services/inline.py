"""Inline runs: a webhook call with ``?wait=true`` whose workflow has only pure nodes (set,
transform, switch, filter... see ``NodeType.pure``) and at most ``INLINE_MAX_NODES`` of them runs
in the API process that received it, instead of going through the queue to a worker and back.

Nothing else changes: the execution has the same rows, lease, checkpoints and events as on a
worker. It is written ``running`` in the transaction that creates it, and the lease is taken
right after. If the API process dies mid-run, the lease expires and the sweeper continues the
execution on a worker, from its last checkpoint, like any other orphan. Pure nodes touch
nothing outside the execution, so no user-visible effect runs in the API process; expressions
are sandboxed as everywhere else. ``ATHENA_INLINE_MAX_NODES=0`` turns inline runs off.

At most ``ATHENA_INLINE_CONCURRENCY`` (2) inline runs at a time per API process: a process runs
Python on one core, and more concurrent runs only queue on the interpreter lock and on the
database's write lock (SQLite has one writer). A call that finds every slot taken goes through
the queue to a worker instead, so a burst spreads over the workers' cores."""
from __future__ import annotations

import functools
import threading
from typing import Any

from flask import current_app
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import joinedload

from athena.engine import registry
from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution


def eligible(workflow: Workflow) -> bool:
    limit = int(current_app.config["INLINE_MAX_NODES"])
    nodes = workflow.nodes or []
    if not nodes or len(nodes) > limit:
        return False
    for node in nodes:
        node_type = registry.get(node.get("type")) if isinstance(node, dict) else None
        if node_type is None or not node_type.pure:
            return False
    return True


def run_inline_if_free(workflow: Workflow, user: User | None, *, mode: str,
                       input: Any) -> WorkflowExecution | None:  # noqa: A002
    """:func:`run_inline` if this process has a free inline slot, else None (use the queue)."""
    slots = _slots()
    if not slots.acquire(blocking=False):
        return None
    try:
        return run_inline(workflow, user, mode=mode, input=input)
    finally:
        slots.release()


def _slots() -> threading.BoundedSemaphore:
    app = current_app._get_current_object()
    slots = app.extensions.get("athena_inline_slots")
    if slots is None:
        slots = app.extensions.setdefault(
            "athena_inline_slots", threading.BoundedSemaphore(max(1, int(app.config["INLINE_CONCURRENCY"]))))
    return slots


def run_inline(workflow: Workflow, user: User | None, *, mode: str, input: Any) -> WorkflowExecution:  # noqa: A002
    """Create the execution ``running``, run it here, and return it reloaded (finished)."""
    from athena.services.execution_run import ExecutionRun
    from athena.services.executions import create_execution

    execution = create_execution(workflow, user, mode=mode, input=input, start=False, running=True)
    execution_id = execution.id
    ExecutionRun(execution_id, continuing=True, announce=True).run()
    return db.session.execute(_reload_statement(), {"execution_id": execution_id}).unique().scalar_one()


@functools.cache
def _reload_statement() -> Select:
    """The finished execution with what its answer shows of the workflow (built once)."""
    return (select(WorkflowExecution).where(WorkflowExecution.id == bindparam("execution_id"))
            .options(joinedload(WorkflowExecution.workflow).joinedload(Workflow.workspace)))
