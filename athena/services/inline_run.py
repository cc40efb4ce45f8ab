"""An inline run committed as one batch (see :mod:`athena.services.inline`): the driver runs the
engine with an in-memory store and a buffered event sink; then the finished execution is
written in one transaction and its events are logged in one Redis round trip. The events, rows
and counters are those of a run on a worker.

The store cannot checkpoint (nothing exists yet to checkpoint into), so the first checkpoint
the driver finds due (an impure node, or the batch age) ends the attempt with
:data:`~athena.runs.driver.OVERFLOW`, as does a suspension; the caller then runs the execution
the persisted way (nothing was written, and pure nodes re-run unobservably)."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.orm.attributes import set_committed_value

from athena.engine import GraphValidationError, RunContext, RunState, RunSuspended
from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution, WorkflowExecutionData
from athena.models.base import new_uuid
from athena.redis_client import get_redis
from athena.runs import lifecycle, wire
from athena.runs.driver import OVERFLOW, RunDriver
from athena.runs.eventlog import event_log_for_app
from athena.runs.plans import graph_key, parsed_graph
from athena.runs.prebuilt import insert_row
from athena.runs.sinks import BufferedSink
from athena.services.execution_run import node_services
from athena.services.executions import commit_keeping_loaded, count_trigger, graph_snapshot, initial_metadata
from athena.services.secrets import runtime_variables
from athena.timeutil import utcnow

log = logging.getLogger(__name__)


class InlineBatch:
    """The store of a run held in memory (:class:`athena.runs.driver.RunStore`): it keeps the
    outcome of a run that finishes, and refuses everything else."""

    def __init__(self) -> None:
        self.outcome: tuple[str, Any, str | None] | None = None

    def checkpoint(self, run: RunDriver) -> bool:
        return False

    def suspend(self, run: RunDriver, event: RunSuspended) -> str:
        return OVERFLOW

    def stop(self, run: RunDriver) -> str:
        return OVERFLOW  # unreachable: nobody can ask to stop a run that does not exist yet

    def hand_over(self, run: RunDriver) -> str:
        return OVERFLOW

    def finish(self, run: RunDriver, status: str, output: Any, error: str | None) -> str:
        self.outcome = (status, output, error)
        return status


def run_batch(workflow: Workflow, user: User | None, *, mode: str, input: Any) -> WorkflowExecution | None:  # noqa: A002
    """Run ``workflow`` in memory and record it as one batch; None when it cannot be one batch
    (a graph that mentions ``execution``, whose ``id`` exists only after the insert; an invalid
    graph, whose failure the persisted way records; an impure node; past the batch age; a
    suspension; an unexpected error, which the persisted way runs again and records)."""
    created = utcnow()
    graph = graph_snapshot(workflow)
    key = graph_key(graph["nodes"], graph["edges"])
    if "execution" in key:
        return None
    try:
        parsed = parsed_graph(graph["nodes"], graph["edges"], key)
    except GraphValidationError:
        return None
    uuid = new_uuid()
    events = BufferedSink(event_log_for_app(), uuid, workflow.workspace.uuid, workflow.uuid)
    events.queue(wire.EXECUTION_STATUS, status="pending", mode=mode)
    events.queue(wire.EXECUTION_STATUS, status="running")
    store = InlineBatch()
    driver = RunDriver(store, events, state=RunState.from_entries([]), meta=initial_metadata(),
                       batch_seconds=float(current_app.config["CHECKPOINT_INTERVAL_SECONDS"]))
    ctx = RunContext(
        trigger_data=input, variables=runtime_variables(workflow.variables),
        execution={"uuid": uuid, "id": 0, "mode": mode, "workflow_uuid": workflow.uuid},
        should_stop=driver.should_stop, max_steps=current_app.config["EXECUTION_MAX_STEPS"],
        max_duration=current_app.config["EXECUTION_MAX_DURATION"], services=node_services(),
        publish=driver.publish,
    )
    try:
        driver.drive(parsed, ctx)
    except Exception:  # noqa: BLE001 - a bug: the persisted way runs it again and records it failed
        return None
    if store.outcome is None:
        return None
    return _record(driver, store.outcome, events, workflow, user, mode, input, created, graph)


def _record(driver: RunDriver, outcome: tuple[str, Any, str | None], events: BufferedSink, workflow: Workflow,
            user: User | None, mode: str, input: Any, created: datetime,  # noqa: A002
            graph: dict[str, Any]) -> WorkflowExecution:
    """One transaction of prebuilt statements (no unit of work), then one Redis round trip."""
    status, output, error = outcome
    driver.meta["execution_time"] = driver.execution_time()
    now = utcnow()
    values = dict(
        uuid=events.execution_uuid, workflow_id=workflow.id, workspace_id=workflow.workspace_id,
        user_id=user.id if user else None, status=status, is_finished=True, mode=mode, input=input,
        output=output, error=error, started_at=created, stopped_at=now, created_at=created, updated_at=now,
        retry_of=None, retry_success_id=None, parent_execution_id=None, parent_node_id=None, wait_till=None,
        requires_human_review=False, has_command_room_task=False, crash_count=0, deleted_at=None,
    )
    execution_id = insert_row(WorkflowExecution.__table__, **values)
    # metadata.workflow_execution_data_id stays None: the API shows the row's id (DataMetadata)
    insert_row(WorkflowExecutionData.__table__, uuid=new_uuid(), workflow_execution_id=execution_id,
               workflow_data=driver.state.to_entries(), metadata=driver.meta, data=graph, created_at=created,
               updated_at=now, deleted_at=None)
    db.session.connection().execute(count_trigger(), {"workflow_id": workflow.id, "now": created})
    commit_keeping_loaded()  # the answer shows the workflow and workspace as loaded
    db.session.expire(workflow, ["trigger_count", "last_used_at", "updated_at"])
    lifecycle.close(events, status, output=output, error=error)
    try:
        events.write(get_redis())
    except RedisError as exc:  # the execution is recorded: answer it; only its live events are lost
        log.warning("inline execution %s recorded, but its events were not logged: Redis is unreachable (%s)",
                    events.execution_uuid, exc)
    answer = WorkflowExecution(id=execution_id, **values)  # what the answer shows: not in the session
    set_committed_value(answer, "workflow", workflow)
    return answer
