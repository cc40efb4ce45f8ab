"""Execution status rules, enforced in one place.

pending -> running -> (waiting | paused) -> running -> completed | failed | cancelled.
Every change is a compare-and-set UPDATE: it succeeds only from an allowed status, so a
late completion can never overwrite ``cancelled`` and a terminal status never changes."""
from __future__ import annotations

from typing import Any

from athena.models import TERMINAL_STATUSES, WorkflowExecution
from athena.services.prebuilt import update_row
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
