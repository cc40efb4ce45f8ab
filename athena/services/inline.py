"""Inline runs: a webhook call with ``?wait=true`` whose workflow has only pure nodes (set,
transform, switch, filter... see ``NodeType.pure``) and at most ``INLINE_MAX_NODES`` of them runs
in the API process that received it, instead of going through the queue to a worker and back.

Nothing else changes: the execution has the same rows and events as on a worker. A run too
long for one batch (below) is written ``running`` in the transaction that creates it, takes
its lease right after and is checkpointed like on a worker. If the API process dies mid-run,
the lease expires and the sweeper continues the execution on a worker, from its last
checkpoint, like any other orphan. Pure nodes touch
nothing outside the execution, so no user-visible effect runs in the API process; expressions
are sandboxed as everywhere else. ``ATHENA_INLINE_MAX_NODES=0`` turns inline runs off.

At most ``ATHENA_INLINE_CONCURRENCY`` (4) inline runs at a time per API process: a process runs
Python on one core, and more concurrent runs only contend for the interpreter lock. A call that
finds every slot taken waits for one up to ``ATHENA_INLINE_WAIT`` (0.5 s): a short inline run
costs a third of the CPU of the same run through the queue and a worker, so waiting a few ms for
a slot gives more throughput than spilling over. After the wait it goes through the queue.

Most inline runs are shorter than one group-commit batch (``ATHENA_CHECKPOINT_INTERVAL``,
25 ms), so they are committed as one batch too, creation included (:mod:`athena.services.inline_run`): the
engine runs in memory first, then one transaction inserts the finished execution with its data
and counts the trigger, and one Redis round trip logs every event (``pending`` to
``execution.finished``). Until that commit nothing exists that anyone could see, stop or
recover; if the process dies before it, the caller gets no answer and nothing ran that anyone
could observe (pure nodes only). A run that reaches the batch age, or whose graph refers to
``execution`` in an expression (its ``id`` is only known once the row exists), is dropped and
run again the persisted way above (pure nodes re-run unobservably)."""
from __future__ import annotations

import functools
import threading
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import joinedload

from athena.engine import registry
from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution
from athena.services.execution_run import ExecutionRun
from athena.services.executions import ExpireLater, at_once, create_execution
from athena.services.inline_run import run_batch


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


def run_inline_if_free(workflow: Workflow, user: User | None, *, mode: str, input: Any,  # noqa: A002
                       expire_later: ExpireLater = at_once) -> WorkflowExecution | None:
    """:func:`run_inline` once this process has a free inline slot (waiting up to
    ``INLINE_WAIT_SECONDS`` for one), else None (use the queue)."""
    slots = _slots()
    if not slots.acquire(timeout=float(current_app.config["INLINE_WAIT_SECONDS"])):
        return None
    try:
        return run_inline(workflow, user, mode=mode, input=input, expire_later=expire_later)
    finally:
        slots.release()


def _slots() -> threading.BoundedSemaphore:
    app = current_app._get_current_object()
    slots = app.extensions.get("athena_inline_slots")
    if slots is None:
        slots = app.extensions.setdefault(
            "athena_inline_slots", threading.BoundedSemaphore(max(1, int(app.config["INLINE_CONCURRENCY"]))))
    return slots


def run_inline(workflow: Workflow, user: User | None, *, mode: str, input: Any,  # noqa: A002
               expire_later: ExpireLater = at_once) -> WorkflowExecution:
    """Run the execution here and return it finished: in memory and committed as one batch
    when it is short, else created ``running``, run with checkpoints and reloaded
    (``expire_later``: see :func:`athena.services.executions.create_execution`)."""
    finished = run_batch(workflow, user, mode=mode, input=input)
    if finished is not None:
        return finished
    return run_persisted(workflow, user, mode=mode, input=input, expire_later=expire_later)


def run_persisted(workflow: Workflow, user: User | None, *, mode: str, input: Any,  # noqa: A002
                  expire_later: ExpireLater = at_once) -> WorkflowExecution:
    """Create the execution ``running``, run it here, and return it reloaded (finished)."""
    execution = create_execution(workflow, user, mode=mode, input=input, start=False, running=True,
                                 expire_later=expire_later)
    execution_id = execution.id
    try:
        ExecutionRun(execution_id, continuing=True, announce=True).run()
    except RedisError:  # no lease without Redis: it stays ``running``; the sweeper continues it later
        db.session.rollback()
    return db.session.execute(_reload_statement(), {"execution_id": execution_id}).unique().scalar_one()


@functools.cache
def _reload_statement() -> Select:
    """The finished execution with what its answer shows of the workflow (built once)."""
    return (select(WorkflowExecution).where(WorkflowExecution.id == bindparam("execution_id"))
            .options(joinedload(WorkflowExecution.workflow).joinedload(Workflow.workspace)))
