"""A run's life cycle, owned here: its status transitions and its closing pair of events.

pending -> running -> (waiting | paused) -> running -> completed | failed | cancelled.
Every change is a compare-and-set UPDATE (:func:`transition`): it succeeds only from an allowed
status, so a late completion can never overwrite ``cancelled`` and a terminal status never
changes. The closing ``execution.status`` + ``execution.finished`` pair is written by
:func:`close` only, once per run, whoever ends it."""
from __future__ import annotations

from typing import Any

from athena.models import TERMINAL_STATUSES, WorkflowExecution
from athena.runs.prebuilt import update_row
from athena.runs.sinks import EventSink
from athena.runs.wire import closing_pair
from athena.timeutil import utcnow

ALLOWED: dict[str, frozenset[str]] = {
    "pending": frozenset({"running", "cancelled", "failed"}),
    "running": frozenset({"waiting", "paused", "completed", "failed", "cancelled"}),
    "waiting": frozenset({"running", "cancelled", "failed"}),
    "paused": frozenset({"running", "cancelled", "failed"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
STOPPABLE = ("pending", "running", "waiting", "paused")


def sources_of(target: str) -> list[str]:
    return [source for source, targets in ALLOWED.items() if target in targets]


def transition(execution_id: int, target: str, *, only_from: tuple[str, ...] | None = None,
               **values: Any) -> bool:
    """Atomically move an execution to ``target``; False if its status did not allow it.

    The caller commits (so the change joins the caller's transaction)."""
    allowed = sources_of(target)
    if only_from is not None:
        allowed = [status for status in allowed if status in only_from]
    now = utcnow()
    values = {"status": target, "is_finished": target in TERMINAL_STATUSES, "updated_at": now, **values}
    if target in TERMINAL_STATUSES:
        values.setdefault("stopped_at", now)
        values.setdefault("wait_till", None)
    return update_row(WorkflowExecution.__table__, execution_id, status_in=tuple(allowed), **values) == 1


def close(events: EventSink, status: str, *, output: Any = None, error: str | None = None) -> bool:
    """Emit the run's closing ``execution.status`` + ``execution.finished`` pair, once per run:
    the one place that writes it. Whoever ends a run calls it after committing the terminal
    status (the worker finishing or noticing a stop, the stop API for a run no worker holds, the
    sweeper failing a run lost too often, the inline batch); the first caller's claim wins and
    the others emit nothing. Held events of ``events`` go out first, in one round trip with the
    pair. False if another caller had already closed the run."""
    return events.close(closing_pair(status, output, error))
