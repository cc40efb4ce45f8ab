"""A workflow execution's run inside an RQ job (or one resumption, or one continuation of it).

:class:`ExecutionRun` loads the execution, holds its lease and drives the engine with the run
layer's driver (:mod:`athena.runs.driver`), whose store is :class:`ExecutionStore` (one data
row, checkpointed by group commit) and whose events go to the execution's stream in the event
log. Status changes and the closing pair are the life cycle's (:mod:`athena.runs.lifecycle`)."""
from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any, Callable

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import joinedload

from athena.crypto import UndecryptableSecret
from athena.engine import GraphValidationError, RunContext, RunState, RunSuspended
from athena.extensions import db
from athena.models import Workflow, WorkflowExecution, WorkflowExecutionData
from athena.redis_client import get_redis
from athena.runs import lifecycle, wire
from athena.runs.driver import OVERFLOW, RunDriver
from athena.runs.plans import parsed_graph
from athena.runs.prebuilt import update_row
from athena.runs.eventlog import stop_key
from athena.runs.sinks import EventLogSink, EventSink, execution_events
from athena.services import approvals, recovery
from athena.services import resume as resumption
from athena.services.leases import Lease
from athena.services.llm_client import llm_services
from athena.services.secrets import runtime_variables
from athena.timeutil import iso, to_naive_utc, utcnow

log = logging.getLogger(__name__)
NOT_STARTED = "not runnable"  # stopped (or taken) before the run's first write: nothing was written


@functools.cache
def _load_statement() -> Select:
    """The execution with its workflow, workspace and data, in one query (built once)."""
    return (select(WorkflowExecution).where(WorkflowExecution.id == bindparam("execution_id"))
            .options(joinedload(WorkflowExecution.workflow).joinedload(Workflow.workspace),
                     joinedload(WorkflowExecution.execution_data)))


def node_services() -> dict[str, Any]:
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
    }


class ExecutionStore:
    """The run's store (:class:`athena.runs.driver.RunStore`) for an execution on a worker: its
    data row takes the checkpoints; its end goes through the life cycle and the services
    around suspensions (approvals, timers, children, hand-overs)."""

    def __init__(self, execution_id: int, uuid: str, data_id: int, events: EventSink, *,
                 retry_of: str | None, has_parent: bool) -> None:
        self.execution_id = execution_id
        self.uuid = uuid
        self.data_id = data_id
        self.events = events
        self.retry_of = retry_of
        self.has_parent = has_parent  # a sub-workflow's child: its parent may be waiting on it
        # A fresh start's ``pending -> running`` values, written with the first checkpoint.
        self.deferred_start: dict[str, Any] | None = None

    def _started(self) -> bool:
        """Write the deferred ``pending -> running`` (in the caller's transaction). False if
        the execution was stopped before: it must not run, and nothing it queued is sent (the
        stop closed it)."""
        if self.deferred_start is None:
            return True
        values, self.deferred_start = self.deferred_start, None
        if lifecycle.transition(self.execution_id, "running", only_from=("pending",), **values):
            return True
        db.session.rollback()
        self.events.take()
        return False

    def checkpoint(self, run: RunDriver) -> bool:
        if not self._started():
            return False  # the driver stops at once (OVERFLOW): stopped before it started
        update_row(WorkflowExecutionData.__table__, self.data_id, workflow_data=run.state.to_entries(),
                   metadata=dict(run.meta), updated_at=utcnow())
        db.session.commit()
        return True

    def suspend(self, run: RunDriver, event: RunSuspended) -> str:
        meta = run.meta
        wait_till: datetime | None = to_naive_utc(event.wait_till) if event.wait_till else None
        if wait_till is not None:
            meta.update(wait_until=iso(wait_till), wait_until_timestamp=int(event.wait_till.timestamp()),
                        wait_started_at=iso(utcnow()))
            meta.pop("wait_completed_at", None)
        meta["running_node"] = event.node_id
        if not run.checkpoint():
            return NOT_STARTED
        if not lifecycle.transition(self.execution_id, event.status, only_from=("running",), wait_till=wait_till):
            db.session.rollback()
            return self.stop(run)
        approval = None
        if event.status == "paused":  # human review: a pending approval, in the same transaction
            approval = approvals.open_approval(self.execution_id, event.node_id, event.info, wait_till)
        db.session.commit()
        self.events.emit(wire.EXECUTION_STATUS, status=event.status, node_id=event.node_id,
                         wait_till=iso(wait_till), info=event.info)
        if approval is not None:
            self.events.emit(wire.APPROVAL_REQUESTED, **approval)
        if wait_till is not None:
            resumption.schedule_resume(self.execution_id, self.uuid, event.node_id, wait_till)
        elif event.status == "waiting":  # a child may have finished before we were waiting
            resumption.resume_if_child_finished(self.execution_id, event.node_id)
        return event.status

    def hand_over(self, run: RunDriver) -> str:
        """Warm shutdown: the node in progress has finished and is checkpointed; another worker
        continues from here (the lease is released when this job returns)."""
        run.meta["running_node"] = None
        if not run.save_batch():
            return NOT_STARTED
        recovery.enqueue_continuation(self.execution_id, self.uuid, reason="handoff")
        return "handed over"

    def stop(self, run: RunDriver) -> str:
        run.meta["running_node"] = None
        if not run.checkpoint():
            return NOT_STARTED
        lifecycle.transition(self.execution_id, "cancelled", error="Stopped")  # no-op if the API already wrote it
        db.session.commit()
        lifecycle.close(self.events, "cancelled", error="Stopped")
        return "cancelled"

    def finish(self, run: RunDriver, status: str, output: Any, error: str | None) -> str:
        run.meta["running_node"] = None
        run.meta["execution_time"] = run.execution_time()
        if not self._started():
            return NOT_STARTED
        update_row(WorkflowExecutionData.__table__, self.data_id, metadata=dict(run.meta),
                   workflow_data=run.state.to_entries())
        if not lifecycle.transition(self.execution_id, status, only_from=("running",), output=output, error=error):
            db.session.commit()  # keep the checkpoint; the status was already terminal (stopped)
            lifecycle.close(self.events, "cancelled", error=error or "Stopped")
            return "cancelled"
        if status == "completed" and self.retry_of:
            db.session.execute(
                update(WorkflowExecution).where(WorkflowExecution.uuid == self.retry_of)
                .values(retry_success_id=self.uuid).execution_options(synchronize_session=False)
            )
        db.session.commit()
        lifecycle.close(self.events, status, output=output, error=error)
        if self.has_parent:
            resumption.notify_parent(self.execution_id)
        return status


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
        self.driver: RunDriver | None = None  # once the execution is loaded and claimed

    def run(self) -> str:
        """Own the execution through its lease for as long as this job runs it."""
        execution = db.session.execute(
            _load_statement(), {"execution_id": self.execution_id}
        ).unique().scalar_one_or_none()
        if execution is None or execution.deleted_at is not None:
            return "missing"
        if execution.is_finished:
            if self.continuing:  # stopped during a hand-over: nobody may have emitted the final pair
                lifecycle.close(execution_events(execution), execution.status, error=execution.error)
            return f"already {execution.status}"
        lease = Lease(get_redis(), execution.uuid, current_app.config["EXECUTION_LEASE_SECONDS"])
        acquired, stop_requested = lease.acquire_and_check(stop_key(execution.uuid))
        if not acquired:
            db.session.rollback()
            return "busy: another worker holds the lease"
        events = execution_events(execution)
        events.saw_stop(stop_requested)
        try:
            return self._run(execution, events)
        except RedisError:
            # Redis went away: leave the execution ``running`` at its last checkpoint; the sweeper
            # continues it once the lease (in Redis) is seen expired.
            db.session.rollback()
            raise
        except Exception as exc:  # a bug: fail loudly, never leave the execution hanging "running"
            log.exception("execution %s: unexpected error", self.execution_id)
            db.session.rollback()
            if self.driver is None:
                raise
            self.driver.events.take()  # what the failed step held is not sent
            return self.driver.store.finish(self.driver, "failed", None,
                                            f"Internal error while running the workflow: {type(exc).__name__}")
        finally:
            lease.release()

    def _run(self, execution: WorkflowExecution, events: EventLogSink) -> str:
        started_at = execution.started_at or utcnow()
        timed_wait = execution.wait_till is not None
        # Everything the run needs, read now: commits below expire the loaded rows.
        data: WorkflowExecutionData = execution.execution_data
        trigger_data, mode, workflow_uuid = execution.input, execution.mode, execution.workflow.uuid
        uuid, execution_id = execution.uuid, self.execution_id
        try:
            variables, undecryptable = runtime_variables(execution.workflow.variables), None
        except UndecryptableSecret as exc:  # the run fails with what to do (after it is marked running)
            variables, undecryptable = {}, str(exc)
        meta = dict(data.meta or {})
        graph_json, entries = dict(data.data or {}), list(data.workflow_data or [])
        store = ExecutionStore(execution_id, uuid, data.id, events, retry_of=execution.retry_of,
                               has_parent=execution.parent_execution_id is not None)
        data_id = data.id
        if self.resume and not resumption.claim(execution_id, list(self.resume)):
            db.session.rollback()  # a duplicate or stale resumption: another job won this suspension
            return "stale resume"
        if self.continuing and execution.status == "running":
            db.session.rollback()  # the lease proves no other worker runs it: go on from the checkpoint
            if self.announce:
                events.queue(wire.EXECUTION_STATUS, status="running")
        elif execution.status == "pending" and not self.resume:
            # A fresh start: ``running`` is written by the first checkpoint (or the end), in its
            # transaction: one commit less, and the database is still never behind the log.
            db.session.rollback()
            store.deferred_start = {"started_at": started_at, "wait_till": None}
            events.queue(wire.EXECUTION_STATUS, status="running")
        elif lifecycle.transition(execution_id, "running", only_from=("pending", "waiting", "paused"),
                                  started_at=started_at, wait_till=None):
            db.session.commit()
            events.queue(wire.EXECUTION_STATUS, status="running")  # sent with the first batch of events
        else:
            db.session.rollback()
            return "not runnable"
        if self.resume:  # approval nodes resume with the decision stored on their approval row
            self.resume = approvals.resolve_resume(self.execution_id, self.resume, events.emit)
        meta["workflow_execution_data_id"] = data_id
        if self.resume and timed_wait and meta.get("wait_started_at"):
            meta["wait_completed_at"] = iso(utcnow())
        driver = self.driver = RunDriver(
            store, events, state=RunState.from_entries(entries), meta=meta,
            batch_seconds=float(current_app.config["CHECKPOINT_INTERVAL_SECONDS"]),
            elapsed_before_ms=float(meta.get("execution_time") or 0))
        try:
            graph = parsed_graph(graph_json.get("nodes", []), graph_json.get("edges", []))
        except GraphValidationError as exc:
            return store.finish(driver, "failed", None, f"The workflow graph is invalid: {exc}")
        if undecryptable:
            return store.finish(driver, "failed", None, f"Cannot run: {undecryptable}")
        ctx = RunContext(
            trigger_data=trigger_data,
            variables=variables,
            execution={"uuid": uuid, "id": execution_id, "mode": mode, "workflow_uuid": workflow_uuid},
            should_stop=driver.should_stop,
            should_handoff=self.should_handoff,
            max_steps=current_app.config["EXECUTION_MAX_STEPS"],
            max_duration=current_app.config["EXECUTION_MAX_DURATION"],
            resume=self.resume,
            # start_child(workflow_uuid, input, wait, node_id=...): sub_workflow nodes; "llm": the
            # model client layer (llm nodes)
            services={**node_services(), "start_child": self.start_child, **llm_services(execution_id)},
            publish=driver.publish,
        )
        db.session.remove()  # no transaction stays open while nodes run
        outcome = driver.drive(graph, ctx)
        return NOT_STARTED if outcome == OVERFLOW else outcome

    def start_child(self, workflow_uuid: str, input: Any, wait: bool, node_id: str | None = None) -> dict[str, Any]:  # noqa: A002
        """``ctx.services["start_child"]`` (sub_workflow nodes)."""
        node_id = node_id or (self.driver.meta.get("running_node") if self.driver else None)
        return resumption.start_child(self.execution_id, node_id, workflow_uuid, input, wait)
