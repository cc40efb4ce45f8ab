"""Where a run's events go: the event log in Redis (a run on a worker, a stop, the sweeper), or
a buffer written with the inline run's one batch. The driver, the lifecycle and the services
talk to an :class:`EventSink` and never to Redis directly.

Both sinks hold events until :meth:`EventSink.flush`: a run queues the events of a batch of
nodes and sends them in one round trip, after the checkpoint that covers them (the database is
never behind the log)."""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from redis import Redis
from redis.exceptions import RedisError

from athena.runs.eventlog import EventLog, event_log_for_app

if TYPE_CHECKING:
    from athena.models import WorkflowExecution

STOP_RECHECK_SECONDS = 0.005
log = logging.getLogger(__name__)


class EventSink(Protocol):
    def queue(self, event: str, **fields: Any) -> None:
        """Hold ``event`` until the next :meth:`flush`."""

    def flush(self) -> None:
        """Send the held events, in order."""

    def emit(self, event: str, **fields: Any) -> None:
        """Queue ``event`` and flush (after any held ones)."""

    def emit_live(self, event: str, **fields: Any) -> None:
        """Like :meth:`emit`, for an event only live watchers need (streamed tokens): when the
        log cannot be reached it is dropped, not raised (the node's output keeps the whole text),
        and the held events stay held, in order, for the next flush."""

    def close(self, pair: list[tuple[str, dict[str, Any]]]) -> bool:
        """Send the held events, then ``pair`` (the run's closing pair) unless the run was
        already closed: exactly one caller per run gets True and sends it."""

    def stop_requested(self) -> bool:
        """Whether someone asked the run to stop (as far as this sink knows)."""


class _Buffer:
    """An execution's events held in order (nodes of concurrent loop iterations queue from threads)."""

    def __init__(self, log: EventLog, execution_uuid: str, workspace_uuid: str, workflow_uuid: str) -> None:
        self.log = log
        self.execution_uuid = execution_uuid
        self.workspace_uuid = workspace_uuid
        self.workflow_uuid = workflow_uuid
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def queue(self, event: str, **fields: Any) -> None:
        with self.lock:
            self.pending.append((event, {"workflow_uuid": self.workflow_uuid, **fields}))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            batch, self.pending = self.pending, []
        return batch


class EventLogSink(_Buffer):
    """The execution's stream in the event log. Each flush is one round trip, which also
    answers whether a stop was requested; between flushes the stop key is read at most every
    ``STOP_RECHECK_SECONDS``."""

    def __init__(self, log: EventLog, execution_uuid: str, workspace_uuid: str, workflow_uuid: str) -> None:
        super().__init__(log, execution_uuid, workspace_uuid, workflow_uuid)
        self.stop_seen = False
        self.last_stop_check = 0.0

    def flush(self) -> None:
        with self.lock:  # held across the append: concurrent flushes keep the events' order
            if not self.pending:
                return
            batch, self.pending = self.pending, []
            result = self.log.append_many(self.execution_uuid, self.workspace_uuid, batch)
        self.saw_stop(result.stop_requested)

    def emit(self, event: str, **fields: Any) -> None:
        self.queue(event, **fields)
        self.flush()

    def emit_live(self, event: str, **fields: Any) -> None:
        with self.lock:
            batch = [*self.pending, (event, {"workflow_uuid": self.workflow_uuid, **fields})]
            self.pending = []
            try:
                result = self.log.append_many(self.execution_uuid, self.workspace_uuid, batch)
            except RedisError as exc:
                self.pending = batch[:-1] + self.pending
                log.warning("execution %s: a live %s event was dropped, Redis is unreachable (%s)",
                            self.execution_uuid, event, exc)
                return
        self.saw_stop(result.stop_requested)

    def close(self, pair: list[tuple[str, dict[str, Any]]]) -> bool:
        with self.lock:  # one round trip: the held events, the claim and (if won) the pair
            batch = [*self.pending, *((event, {"workflow_uuid": self.workflow_uuid, **fields}) for event, fields in pair)]
            self.pending = []
            result = self.log.append_many(self.execution_uuid, self.workspace_uuid, batch,
                                          claim_from=len(batch) - len(pair) + 1)
        self.saw_stop(result.stop_requested)
        return result.claimed

    def saw_stop(self, requested: bool) -> None:
        """What a read of the stop key just answered (e.g. together with the lease)."""
        self.stop_seen = self.stop_seen or requested
        self.last_stop_check = time.monotonic()

    def stop_requested(self) -> bool:
        if not self.stop_seen and time.monotonic() - self.last_stop_check > STOP_RECHECK_SECONDS:
            try:
                self.stop_seen = self.log.stop_requested(self.execution_uuid)
            except RedisError:
                return self.stop_seen  # Redis away: keep the last answer; the node goes on
            self.last_stop_check = time.monotonic()
        return self.stop_seen


def execution_events(execution: WorkflowExecution) -> EventLogSink:
    """The sink of ``execution``'s stream in the event log (its workflow and workspace loaded)."""
    return EventLogSink(event_log_for_app(), execution.uuid, execution.workflow.workspace.uuid,
                        execution.workflow.uuid)


class BufferedSink(_Buffer):
    """Events of a run that nobody can see yet (the inline batch): all of them are written by
    :meth:`write`, after the transaction that creates the execution."""

    def __init__(self, log: EventLog, execution_uuid: str, workspace_uuid: str, workflow_uuid: str) -> None:
        super().__init__(log, execution_uuid, workspace_uuid, workflow_uuid)
        self.closed = 0  # the number of events of the closing pair, once queued

    def flush(self) -> None:
        return None  # everything goes out with write()

    def emit(self, event: str, **fields: Any) -> None:
        self.queue(event, **fields)

    def emit_live(self, event: str, **fields: Any) -> None:
        self.queue(event, **fields)

    def close(self, pair: list[tuple[str, dict[str, Any]]]) -> bool:
        if self.closed:
            return False
        for event, fields in pair:
            self.queue(event, **fields)
        self.closed = len(pair)  # nobody else knows the execution yet; write() records the claim
        return True

    def stop_requested(self) -> bool:
        return False  # nobody can ask: the execution does not exist yet

    def write(self, redis: Redis) -> None:
        """One round trip: every event, with the closing claim if the pair was queued."""
        batch = self.take()
        claim_from = len(batch) - self.closed + 1 if self.closed else 0
        pipe = redis.pipeline(transaction=False)
        self.log.append_many(self.execution_uuid, self.workspace_uuid, batch, pipeline=pipe, claim_from=claim_from)
        pipe.execute()
