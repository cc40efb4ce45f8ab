"""An inline run committed as one batch (see :mod:`athena.services.inline`): the engine runs in
memory, then the finished execution is written in one transaction and its events are logged in
one Redis round trip. The events, rows and counters are those of a run on a worker."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy.orm.attributes import set_committed_value

from athena.engine import GraphValidationError, RunState, RunSuspended
from athena.eventlog import event_log_for_app
from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution, WorkflowExecutionData
from athena.models.base import new_uuid
from athena.redis_client import get_redis
from athena.services.execution_run import ExecutionRun
from athena.services.executions import (
    commit_keeping_loaded, count_trigger, final_events_key, graph_snapshot, initial_metadata,
)
from athena.services.prebuilt import insert_row
from athena.services.run_support import bounded, graph_key, parsed_graph
from athena.services.secrets import runtime_variables
from athena.timeutil import utcnow


class TooLong(Exception):
    """The run cannot be one batch: it goes the persisted way (nothing was written)."""


class DeferredRun(ExecutionRun):
    """:class:`ExecutionRun` without a row: every checkpoint and event is held until the end;
    reaching the batch age (or anything but finishing) raises :class:`TooLong`, and so does a
    graph that mentions ``execution`` (an expression may read its ``id``, which exists only after
    the insert)."""

    def __init__(self, workflow: Workflow, mode: str, input: Any) -> None:  # noqa: A002
        super().__init__(0, announce=True)
        self.workflow, self.mode, self.input = workflow, mode, input
        self.uuid = new_uuid()
        self.workflow_uuid = workflow.uuid
        self.workspace_uuid = workflow.workspace.uuid
        self.outcome: tuple[str, Any, str | None] | None = None
        self.elapsed_before = 0.0

    # What ExecutionRun would write or ask along the way: held, or impossible here.
    def checkpoint_due(self, pure: bool) -> bool:
        if not pure or time.monotonic() - self.clock_started >= self.checkpoint_interval:
            raise TooLong
        return False

    def save_batch(self) -> None:
        raise TooLong

    def flush_events(self) -> None:
        return None  # all of them go out after the commit

    def should_stop(self) -> bool:
        return False  # nobody can ask: the execution does not exist yet

    def suspend(self, event: RunSuspended) -> str:
        raise TooLong

    def hand_over(self) -> str:
        raise TooLong

    def stopped(self) -> str:
        raise TooLong

    def finish(self, status: str, output: Any, error: str | None) -> str:
        self.outcome = (status, output, error)
        return status

    # The run and its record
    def run_and_record(self, user: User | None) -> WorkflowExecution:
        created = utcnow()
        workflow = self.workflow
        graph = graph_snapshot(workflow)
        key = graph_key(graph["nodes"], graph["edges"])
        if "execution" in key:
            raise TooLong
        self.meta = initial_metadata()
        self.queue("execution.status", status="pending", mode=self.mode)
        self.queue("execution.status", status="running")
        try:
            parsed = parsed_graph(graph["nodes"], graph["edges"], key)
        except GraphValidationError:
            raise TooLong from None  # the persisted way records the failure
        self.state = RunState.from_entries([])
        try:
            self.drive(parsed, self.context(self.input, runtime_variables(workflow.variables), self.mode))
        except TooLong:
            raise
        except Exception:  # noqa: BLE001 - a bug: the persisted way runs it again and records it failed
            raise TooLong from None
        if self.outcome is None:
            raise TooLong
        return self._record(user, created, graph)

    def _record(self, user: User | None, created: datetime, graph: dict[str, Any]) -> WorkflowExecution:
        """One transaction of prebuilt statements (no unit of work), then one Redis round trip."""
        status, output, error = self.outcome
        workflow = self.workflow
        self.meta["execution_time"] = self.execution_time()
        now = utcnow()
        values = dict(
            uuid=self.uuid, workflow_id=workflow.id, workspace_id=workflow.workspace_id,
            user_id=user.id if user else None, status=status, is_finished=True, mode=self.mode, input=self.input,
            output=output, error=error, started_at=created, stopped_at=now, created_at=created, updated_at=now,
            retry_of=None, retry_success_id=None, parent_execution_id=None, parent_node_id=None, wait_till=None,
            requires_human_review=False, has_command_room_task=False, crash_count=0, deleted_at=None,
        )
        execution_id = insert_row(WorkflowExecution.__table__, **values)
        # metadata.workflow_execution_data_id stays None: the API shows the row's id (DataMetadata)
        insert_row(WorkflowExecutionData.__table__, uuid=new_uuid(), workflow_execution_id=execution_id,
                   workflow_data=self.state.to_entries(), metadata=self.meta, data=graph, created_at=created,
                   updated_at=now, deleted_at=None)
        db.session.connection().execute(count_trigger(), {"workflow_id": workflow.id, "now": created})
        commit_keeping_loaded()  # the answer shows the workflow and workspace as loaded
        db.session.expire(workflow, ["trigger_count", "last_used_at", "updated_at"])
        bounded_output, truncated = bounded(output)
        self.queue("execution.status", status=status)
        self.queue("execution.finished", status=status, output=bounded_output, output_truncated=truncated,
                   error=error)
        pipe = get_redis().pipeline(transaction=False)
        pipe.set(final_events_key(self.uuid), "1", ex=current_app.config["EVENT_LOG_TTL_SECONDS"])
        event_log_for_app().append_many(self.uuid, self.workspace_uuid, self.pending, pipeline=pipe)
        self.pending = []
        pipe.execute()
        answer = WorkflowExecution(id=execution_id, **values)  # what the answer shows: not in the session
        set_committed_value(answer, "workflow", workflow)
        return answer

