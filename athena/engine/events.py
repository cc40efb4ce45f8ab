"""Events yielded by :func:`athena.engine.runner.run_graph`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Union

from athena.timeutil import iso

__all__ = ["Event", "LlmTokens", "LlmUsage", "LoopProgress", "NodeFinished", "NodeStarted", "Published",
           "RunFinished", "RunStopped", "RunSuspended"]


@dataclass(slots=True)
class NodeStarted:
    node_id: str
    node_type: str
    started_at: str
    iteration: int | None = None  # loop.index (1-based) when run inside a for_each body
    pure: bool = False  # the node type is pure (see NodeType.pure): its checkpoint may be batched
    kind: ClassVar[str] = "node.started"

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "node_id": self.node_id, "node_type": self.node_type,
               "started_at": self.started_at}
        if self.iteration is not None:
            out["iteration"] = self.iteration
        return out


@dataclass(slots=True)
class NodeFinished:
    node_id: str
    entry: dict[str, Any]
    retries: int = 0
    iteration: int | None = None  # loop.index (1-based) when run inside a for_each body
    kind: ClassVar[str] = "node.finished"

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "node_id": self.node_id, "entry": dict(self.entry),
               "retries": self.retries}
        if self.iteration is not None:
            out["iteration"] = self.iteration
        return out


@dataclass(slots=True)
class LoopProgress:
    """A loop node finished item ``index`` (1-based); results are relayed in item order.

    ``entry`` is the loop node's in-progress entry (status "running", output
    ``{"results": [...], "next_index": k, "errors": e}``) to checkpoint.
    """

    node_id: str
    index: int
    length: int
    processed: int
    errors: int
    entry: dict[str, Any]
    kind: ClassVar[str] = "node.progress"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "node_id": self.node_id, "index": self.index,
                "length": self.length, "processed": self.processed, "errors": self.errors}


@dataclass(slots=True)
class RunSuspended:
    node_id: str
    status: str
    wait_till: datetime | None = None
    info: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "execution.suspended"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "node_id": self.node_id, "status": self.status,
                "wait_till": iso(self.wait_till) if self.wait_till else None,
                "info": self.info}


@dataclass(slots=True)
class RunStopped:
    """The run stopped before a node: a stop was requested, or (``handoff``) the caller asked
    to hand the run over at a node boundary so another process continues it."""

    handoff: bool = False
    kind: ClassVar[str] = "execution.stopped"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "handoff": self.handoff}


@dataclass(slots=True)
class RunFinished:
    status: str  # "completed" | "failed"
    output: Any = None
    error: str | None = None
    kind: ClassVar[str] = "execution.finished"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "status": self.status, "output": self.output,
                "error": self.error}


@dataclass(slots=True)
class LlmTokens:
    """Text a streaming ``llm`` node received, in order (tiny deltas batched). Published while
    the node runs, through :meth:`NodeContext.publish`, not yielded by the runner."""

    node_id: str
    text: str
    kind: ClassVar[str] = "llm.token"


@dataclass(slots=True)
class LlmUsage:
    """The tokens an ``llm`` node's call used (published when its answer is complete)."""

    node_id: str
    usage: dict[str, Any]
    model: str | None = None
    kind: ClassVar[str] = "llm.usage"


Event = Union[NodeStarted, NodeFinished, LoopProgress, RunSuspended, RunStopped, RunFinished]
# What a node publishes mid-run (RunContext.publish), in order with the runner's events.
Published = Union[LlmTokens, LlmUsage]
