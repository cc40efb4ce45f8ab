"""Run inputs (:class:`RunContext`) and persisted progress (:class:`RunState`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from athena.timeutil import aware_utcnow

if TYPE_CHECKING:
    from athena.engine.events import Published

__all__ = ["ENTRY_KEYS", "FINAL_STATUSES", "RunContext", "RunState", "SUSPENDED_STATUSES"]

FINAL_STATUSES = frozenset({"success", "error", "skipped"})
SUSPENDED_STATUSES = frozenset({"waiting", "paused"})
ENTRY_KEYS = ("node_id", "type", "status", "output", "error", "handle", "started_at",
              "stopped_at", "attempts")


def _never() -> bool:
    return False


def _ignore(event: Published) -> None:
    return None


@dataclass
class RunContext:
    """Everything a run needs from its caller.  The engine does no I/O itself."""

    trigger_data: Any = None
    variables: dict[str, Any] = field(default_factory=dict)
    execution: dict[str, Any] = field(default_factory=dict)
    should_stop: Callable[[], bool] = _never
    # Checked only between top-level nodes (never inside a node): hand the run over.
    should_handoff: Callable[[], bool] = _never
    now: Callable[[], datetime] = aware_utcnow
    sleep: Callable[[float], None] = time.sleep
    max_steps: int = 10_000
    max_duration: float | None = None
    resume: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    # What nodes publish while they run (LlmTokens, LlmUsage), to the caller's run driver.
    publish: Callable[[Published], None] = _ignore


@dataclass
class RunState:
    """Per-node run entries in execution order, plus the executed-step count."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: int = 0

    @classmethod
    def from_entries(cls, entries: list[dict[str, Any]], steps: int | None = None) -> RunState:
        by_id = {entry["node_id"]: dict(entry) for entry in entries}
        if steps is None:
            steps = sum(1 for e in by_id.values() if e.get("status") != "skipped")
        return cls(entries=by_id, steps=steps)

    def to_entries(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self.entries.values()]

    def get(self, node_id: str) -> dict[str, Any] | None:
        return self.entries.get(node_id)
