"""Where nodes run (:class:`Frame`) and why a frame ended early (:class:`Halt`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from athena.engine.events import RunSuspended
from athena.engine.state import FINAL_STATUSES

__all__ = ["STOPPED", "Frame", "Halt", "active_inputs", "make_entry"]


def _never() -> bool:
    return False


@dataclass(slots=True)
class Halt:
    """Why a frame stopped before its last node.

    ``kind``: "failed" (a node failed with on_error=stop; a loop turns it into
    its own error), "fatal" (a run limit; fails the whole run), "stopped", "handoff", or
    "suspended" (``event`` says where).
    """

    kind: str
    error: str | None = None
    event: RunSuspended | None = None


STOPPED = Halt("stopped")
HANDOFF = Halt("handoff")  # the caller asked to hand the run over (e.g. worker shutdown)


@dataclass(slots=True)
class Frame:
    """The top of the graph (``owner`` None) or one iteration of loop ``owner``'s body.

    ``entries`` route data between the frame's nodes (``RunState.entries`` at
    the top, a fresh dict per iteration); ``nodes`` is the expression scope's
    ``nodes``; ``extra`` adds ``item``/``loop`` in a body; ``iteration`` is the
    1-based item index reported on events; ``cancelled`` lets a concurrent loop
    abandon sibling iterations.
    """

    owner: str | None
    entries: dict[str, dict[str, Any]]
    nodes: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    iteration: int | None = None
    cancelled: Callable[[], bool] = _never

    def record(self, node_id: str, entry: dict[str, Any]) -> None:
        self.entries[node_id] = entry
        if entry["status"] in FINAL_STATUSES:
            self.nodes[node_id] = {"output": entry.get("output"), "status": entry["status"]}


def make_entry(node_id: str, type_name: str, status: str, output: Any, error: str | None,
               handle: str | None, started_at: str | None, stopped_at: str | None,
               attempts: int) -> dict[str, Any]:
    return {"node_id": node_id, "type": type_name, "status": status, "output": output,
            "error": error, "handle": handle, "started_at": started_at,
            "stopped_at": stopped_at, "attempts": attempts}


def active_inputs(incoming: list[dict[str, Any]],
                  entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Outputs of sources whose chosen handle activates an incoming edge."""
    inputs: dict[str, Any] = {}
    for edge in incoming:
        source = entries.get(edge["source"])
        if (source is not None and source.get("status") in ("success", "error")
                and source.get("handle") == edge["source_handle"]):
            inputs.setdefault(edge["source"], source.get("output"))
    return inputs
