"""Runs one execution (or one resumption of it) inside an RQ job.

The pure engine yields events; this module is the observer that checkpoints each node to the
database (one transaction per node), appends every event to the replayable log, and feeds
stop signals back to the engine."""
from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import datetime
from typing import Any, Callable

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import joinedload

from athena.crypto import UndecryptableSecret
from athena.engine import (
    Graph, GraphValidationError, LoopProgress, NodeFinished, NodeStarted, RunContext, RunFinished,
    RunState, RunStopped, RunSuspended, run_graph,
)
from athena.eventlog import EventLog, event_log_for_app
from athena.extensions import db
from athena.models import Workflow, WorkflowExecution, WorkflowExecutionData
from athena.redis_client import get_redis
from athena.services import approvals, recovery
from athena.services import resume as resumption
from athena.services.executions import claim_final_events, finished_event, status_event
from athena.services.leases import Lease
from athena.services.llm_client import llm_services
from athena.services.prebuilt import update_row
from athena.services.run_support import bounded, parsed_graph
from athena.services.secrets import runtime_variables
from athena.services.status import transition
from athena.timeutil import iso, to_naive_utc, utcnow

log = logging.getLogger(__name__)
STOP_RECHECK_SECONDS = 0.005


@functools.cache
def _load_statement() -> Select:
    """The execution with its workflow, workspace and data, in one query (built once)."""
    return (select(WorkflowExecution).where(WorkflowExecution.id == bindparam("execution_id"))
            .options(joinedload(WorkflowExecution.workflow).joinedload(Workflow.workspace),
                     joinedload(WorkflowExecution.execution_data)))


def _iteration(event: NodeStarted | NodeFinished) -> dict[str, int]:
    return {"iteration": event.iteration} if event.iteration is not None else {}


class ExecutionRun:
    def __init__(self, execution_id: int, resume: dict[str, Any] | None = None, *,
                 continuing: bool = False, should_handoff: Callable[[], bool] = lambda: False,
                 announce: bool = False) -> None:
        self.execution_id = execution_id
        self.resume = resume or {}
        # A continuation picks up a ``running`` execution whose previous worker died or handed it over.
        self.continuing = continuing
        # An inline run (athena/services/inline.py) starts an execution created ``running``.
        self.announce = announce
        self.should_handoff = should_handoff
        self.log: EventLog = event_log_for_app()
        self.stop_flag = False
        self.last_stop_check = 0.0
        self.pending: list[tuple[str, dict[str, Any]]] = []  # events waiting for the next round trip
        self.emit_lock = threading.Lock()  # nodes in concurrent loop iterations emit from threads
        self.clock_started = time.monotonic()
        # Group commit: pure nodes' checkpoints and events are batched for up to this long.
        self.checkpoint_interval = float(current_app.config["CHECKPOINT_INTERVAL_SECONDS"])
        self.last_checkpoint = self.clock_started
        self.impure_started: set[tuple[str, int | None]] = set()
        self.unsaved_effects = False  # an impure node finished since the last checkpoint
        self.has_parent = True  # until the execution is loaded: then whether it is a sub-workflow's child

    # -- signals -----------------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        """Append ``event`` now, after any queued ones (one Redis round trip for all)."""
        self.queue(event, **fields)
        self.flush_events()

    def flush_events(self) -> None:
        with self.emit_lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, []
            result = self.log.append_many(self.uuid, self.workspace_uuid, batch)
        self.stop_flag = self.stop_flag or result.stop_requested
        self.last_stop_check = time.monotonic()

    def queue(self, event: str, **fields: Any) -> None:
        """Hold ``event`` for the next :meth:`emit` (always right after, before any node runs)."""
        with self.emit_lock:
            self.pending.append((event, {"workflow_uuid": self.workflow_uuid, **fields}))

    def should_stop(self) -> bool:
        if not self.stop_flag and time.monotonic() - self.last_stop_check > STOP_RECHECK_SECONDS:
            try:
                self.stop_flag = self.log.stop_requested(self.uuid)
            except RedisError:
                return self.stop_flag  # Redis away: keep the last answer; the node goes on
            self.last_stop_check = time.monotonic()
        return self.stop_flag

    # -- main --------------------------------------------------------------------------------
    def run(self) -> str:
        """Own the execution through its lease for as long as this job runs it."""
        execution = db.session.execute(
            _load_statement(), {"execution_id": self.execution_id}
        ).unique().scalar_one_or_none()
        if execution is None or execution.deleted_at is not None:
            return "missing"
        if execution.is_finished:
            if self.continuing:  # stopped during a hand-over: nobody may have emitted the final pair
                if claim_final_events(execution.uuid):
                    status_event(execution, execution.status)
                    finished_event(execution, execution.status, error=execution.error)
            return f"already {execution.status}"
        lease = Lease(get_redis(), execution.uuid, current_app.config["EXECUTION_LEASE_SECONDS"])
        if not lease.acquire():
            db.session.rollback()
            return "busy: another worker holds the lease"
        try:
            return self._run(execution)
        except RedisError:
            # Redis went away: leave the execution ``running`` at its last checkpoint; the sweeper
            # continues it once the lease (in Redis) is seen expired.
            db.session.rollback()
            raise
        except Exception as exc:  # a bug: fail loudly, never leave the execution hanging "running"
            log.exception("execution %s: unexpected error", self.execution_id)
            db.session.rollback()
            if hasattr(self, "data_id"):
                self.pending.clear()
                return self.finish("failed", None, f"Internal error while running the workflow: {type(exc).__name__}")
            raise
        finally:
            lease.release()

    def _run(self, execution: WorkflowExecution) -> str:
        self.uuid = execution.uuid
        self.workflow_uuid = execution.workflow.uuid
        self.workspace_uuid = execution.workflow.workspace.uuid
        self.retry_of = execution.retry_of
        self.has_parent = execution.parent_execution_id is not None
        started_at = execution.started_at or utcnow()
        timed_wait = execution.wait_till is not None
        # Everything the run needs, read now: commits below expire the loaded rows.
        data: WorkflowExecutionData = execution.execution_data
        trigger_data, mode = execution.input, execution.mode
        try:
            variables, undecryptable = runtime_variables(execution.workflow.variables), None
        except UndecryptableSecret as exc:  # the run fails with what to do (after it is marked running)
            variables, undecryptable = {}, str(exc)
        self.data_id = data.id
        self.meta = dict(data.meta or {})
        graph_json, entries = dict(data.data or {}), list(data.workflow_data or [])
        if self.resume and not resumption.claim(execution.id, list(self.resume)):
            db.session.rollback()  # a duplicate or stale resumption: another job won this suspension
            return "stale resume"
        if self.continuing and execution.status == "running":
            db.session.rollback()  # the lease proves no other worker runs it: go on from the checkpoint
            if self.announce:
                self.queue("execution.status", status="running")
        elif transition(execution.id, "running", only_from=("pending", "waiting", "paused"),
                        started_at=started_at, wait_till=None):
            db.session.commit()
            self.queue("execution.status", status="running")  # sent with the first batch of events
        else:
            db.session.rollback()
            return "not runnable"
        if self.resume:  # approval nodes resume with the decision stored on their approval row
            self.resume = approvals.resolve_resume(self.execution_id, self.resume, self.emit)
        self.meta["workflow_execution_data_id"] = self.data_id
        if self.resume and timed_wait and self.meta.get("wait_started_at"):
            self.meta["wait_completed_at"] = iso(utcnow())
        self.elapsed_before = float(self.meta.get("execution_time") or 0)
        try:
            graph = parsed_graph(graph_json.get("nodes", []), graph_json.get("edges", []))
        except GraphValidationError as exc:
            return self.finish("failed", None, f"The workflow graph is invalid: {exc}")
        if undecryptable:
            return self.finish("failed", None, f"Cannot run: {undecryptable}")
        self.state = RunState.from_entries(entries)
        ctx = self.context(trigger_data, variables, mode)
        db.session.remove()  # no transaction stays open while nodes run
        return self.drive(graph, ctx)

    def context(self, trigger_data: Any, variables: dict[str, Any], mode: str) -> RunContext:
        return RunContext(
            trigger_data=trigger_data,
            variables=variables,
            execution={"uuid": self.uuid, "id": self.execution_id, "mode": mode,
                       "workflow_uuid": self.workflow_uuid},
            should_stop=self.should_stop,
            should_handoff=self.should_handoff,
            max_steps=current_app.config["EXECUTION_MAX_STEPS"],
            max_duration=current_app.config["EXECUTION_MAX_DURATION"],
            resume=self.resume,
            services=self.services(),
        )

    def drive(self, graph: Graph, ctx: RunContext) -> str:
        """Run the engine, observing each of its events; the outcome's name."""
        for event in run_graph(graph, ctx, self.state):
            if isinstance(event, NodeStarted):
                self.on_node_started(event)
            elif isinstance(event, NodeFinished):
                self.on_node_finished(event)
            elif isinstance(event, LoopProgress):
                self.on_loop_progress(event)
            elif isinstance(event, RunSuspended):
                return self.suspend(event)
            elif isinstance(event, RunStopped):
                return self.hand_over() if event.handoff else self.stopped()
            elif isinstance(event, RunFinished):
                return self.finish(event.status, event.output, event.error)
        return "ended"

    def services(self) -> dict[str, Any]:
        """What I/O-capable node types get through ``ctx.services`` (the engine passes it on)."""
        config = current_app.config
        return {
            "settings": {
                "http_allowlist": list(config["HTTP_ALLOWLIST"]),
                "http_max_response_bytes": config["HTTP_MAX_RESPONSE_BYTES"],
                "http_default_timeout": config["HTTP_DEFAULT_TIMEOUT"],
                "openai_api_key": config["OPENAI_API_KEY"],
                "openai_base_url": config["OPENAI_BASE_URL"],
                "llm_default_model": config["LLM_DEFAULT_MODEL"],
                "llm_timeout": config["LLM_TIMEOUT"],
            },
            # emit("llm.token", node_id=..., token=...): append a live event to this execution's log
            "emit": self.emit,
            # start_child(workflow_uuid, input, wait, node_id=...) -> {"uuid", ...} (sub_workflow nodes)
            "start_child": self.start_child,
            **llm_services(self.execution_id),  # "llm": the model client layer (llm nodes)
        }

    def start_child(self, workflow_uuid: str, input: Any, wait: bool, node_id: str | None = None) -> dict[str, Any]:  # noqa: A002
        return resumption.start_child(self.execution_id, node_id or self.meta.get("running_node"), workflow_uuid,
                                      input, wait)

    def execution_time(self) -> int:
        """Milliseconds spent running, over every stretch of the run (documented as an integer)."""
        return round(self.elapsed_before + (time.monotonic() - self.clock_started) * 1000)

    def checkpoint(self) -> None:
        self.meta["execution_time"] = self.execution_time()
        update_row(WorkflowExecutionData.__table__, self.data_id, workflow_data=self.state.to_entries(),
                   metadata=dict(self.meta), updated_at=utcnow())
        db.session.commit()
        self.last_checkpoint = time.monotonic()
        self.unsaved_effects = False

    def save_batch(self) -> None:
        """The checkpoint, then the events of the batch (the database is never behind the log)."""
        self.checkpoint()
        self.flush_events()

    def checkpoint_due(self, pure: bool) -> bool:
        """Before an impure node, after one, or once the batch is ``checkpoint_interval`` old."""
        return (not pure or self.unsaved_effects
                or time.monotonic() - self.last_checkpoint >= self.checkpoint_interval)

    def on_node_started(self, event: NodeStarted) -> None:
        """One transaction checkpoints the nodes finished so far together with the one that
        starts; one round trip logs their events. Nothing runs in between, so a crash loses at
        most the node in progress plus, within one batch, pure nodes (which simply run again)."""
        self.meta["running_node"] = event.node_id
        if not event.pure:
            self.impure_started.add((event.node_id, event.iteration))
        self.queue("node.started", node_id=event.node_id, node_type=event.node_type, started_at=event.started_at,
                   **_iteration(event))
        if self.checkpoint_due(event.pure):
            self.save_batch()

    def on_node_finished(self, event: NodeFinished) -> None:
        """Counted now; written by the next checkpoint (the next node's start, or the end)."""
        entry = event.entry
        if (event.node_id, event.iteration) in self.impure_started:
            self.impure_started.discard((event.node_id, event.iteration))
            self.unsaved_effects = True
        if entry["status"] in ("success", "error"):  # not skipped, not a suspension (counted when it ends)
            self.meta["processed_count"] = int(self.meta.get("processed_count") or 0) + 1
        if entry["status"] == "error":
            self.meta["error_count"] = int(self.meta.get("error_count") or 0) + 1
        self.meta["retry_count"] = int(self.meta.get("retry_count") or 0) + int(event.retries or 0)
        self.meta["running_node"] = None
        output, truncated = bounded(entry.get("output"))
        self.queue("node.finished", node_id=event.node_id, node_type=entry.get("type"), status=entry["status"],
                   output=output, output_truncated=truncated, error=entry.get("error"), handle=entry.get("handle"),
                   started_at=entry.get("started_at"), stopped_at=entry.get("stopped_at"), **_iteration(event))

    def on_loop_progress(self, event: LoopProgress) -> None:
        """A for_each item finished: checkpoint the loop node's {"results", "next_index"} entry."""
        self.meta["loop_index"] = event.index
        self.meta["running_node"] = event.node_id
        self.queue("node.progress", node_id=event.node_id, index=event.index, length=event.length,
                   processed=event.processed, errors=event.errors)
        if self.checkpoint_due(pure=True):
            self.save_batch()

    def suspend(self, event: RunSuspended) -> str:
        wait_till: datetime | None = to_naive_utc(event.wait_till) if event.wait_till else None
        if wait_till is not None:
            self.meta.update(wait_until=iso(wait_till), wait_until_timestamp=int(event.wait_till.timestamp()),
                             wait_started_at=iso(utcnow()))
            self.meta.pop("wait_completed_at", None)
        self.meta["running_node"] = event.node_id
        self.checkpoint()
        if not transition(self.execution_id, event.status, only_from=("running",), wait_till=wait_till):
            db.session.rollback()
            return self.stopped()
        approval = None
        if event.status == "paused":  # human review: a pending approval, in the same transaction
            approval = approvals.open_approval(self.execution_id, event.node_id, event.info, wait_till)
        db.session.commit()
        self.emit("execution.status", status=event.status, node_id=event.node_id, wait_till=iso(wait_till),
                  info=event.info)
        if approval is not None:
            self.emit("approval.requested", **approval)
        if wait_till is not None:
            resumption.schedule_resume(self.execution_id, self.uuid, event.node_id, wait_till)
        elif event.status == "waiting":  # a child may have finished before we were waiting
            resumption.resume_if_child_finished(self.execution_id, event.node_id)
        return event.status

    def hand_over(self) -> str:
        """Warm shutdown: the node in progress has finished and is checkpointed; another worker
        continues from here (the lease is released when this job returns)."""
        self.meta["running_node"] = None
        self.save_batch()
        recovery.enqueue_continuation(self.execution_id, self.uuid, reason="handoff")
        return "handed over"

    def emit_final(self, status: str, **fields: Any) -> None:
        """The terminal pair, unless someone else (the API's stop) already emitted it."""
        if claim_final_events(self.uuid):
            self.queue("execution.status", status=status)
            self.queue("execution.finished", status=status, **fields)
        self.flush_events()

    def stopped(self) -> str:
        self.meta["running_node"] = None
        self.checkpoint()
        transition(self.execution_id, "cancelled", error="Stopped")  # no-op if the API already wrote it
        db.session.commit()
        self.emit_final("cancelled", output=None, error="Stopped")
        return "cancelled"

    def finish(self, status: str, output: Any, error: str | None) -> str:
        self.meta["running_node"] = None
        self.meta["execution_time"] = self.execution_time()
        values: dict[str, Any] = {"metadata": dict(self.meta)}
        if hasattr(self, "state"):
            values["workflow_data"] = self.state.to_entries()
        update_row(WorkflowExecutionData.__table__, self.data_id, **values)
        if not transition(self.execution_id, status, only_from=("running",), output=output, error=error):
            db.session.commit()  # keep the checkpoint; the status was already terminal (stopped)
            self.emit_final("cancelled", output=None, error=error or "Stopped")
            return "cancelled"
        if status == "completed" and self.retry_of:
            db.session.execute(
                update(WorkflowExecution).where(WorkflowExecution.uuid == self.retry_of)
                .values(retry_success_id=self.uuid).execution_options(synchronize_session=False)
            )
        db.session.commit()
        output, truncated = bounded(output)
        self.emit_final(status, output=output, output_truncated=truncated, error=error)
        if self.has_parent:  # a sub-workflow's child: its parent may be waiting on it
            resumption.notify_parent(self.execution_id)
        return status
