"""Base class and result types for node types."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from marshmallow import RAISE, Schema

from athena.engine.errors import NodeError, StopRequested

if TYPE_CHECKING:
    from athena.engine.context import NodeContext

__all__ = ["Iterate", "NodeError", "NodeResult", "NodeType", "ParametersSchema", "StopRequested",
           "Suspend"]

SUSPEND_STATUSES = ("waiting", "paused")


def as_list(items: Any) -> list:
    """An evaluated ``items`` parameter as a list, or a node error saying what it was."""
    if isinstance(items, tuple):
        return list(items)
    if not isinstance(items, list):
        raise NodeError(f"items must evaluate to a list, got {type(items).__name__}", retryable=False)
    return items


class ParametersSchema(Schema):
    """Base for node parameter schemas: unknown fields are rejected."""

    class Meta:
        unknown = RAISE


@dataclass(slots=True)
class NodeResult:
    """A node's output and the output handle it routes to."""

    output: Any
    handle: str = "main"


@dataclass(slots=True)
class Suspend:
    """Returned by a node that must wait (timer, approval, pause)."""

    status: str
    wait_till: datetime | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in SUSPEND_STATUSES:
            raise ValueError(f"Suspend.status must be one of {SUSPEND_STATUSES}, got {self.status!r}")


@dataclass(slots=True)
class Iterate:
    """Returned by a loop node type: run its body once per item, then route the
    list of iteration results to ``handle`` (see :mod:`athena.engine.loop`)."""

    items: list[Any]
    concurrency: int = 1
    handle: str = "done"


class NodeType:
    """A kind of node.  Subclasses are registered as stateless singletons."""

    type: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Parameters: ClassVar[type[Schema]] = ParametersSchema
    handles: ClassVar[tuple[str, ...]] = ("main",)
    is_trigger: ClassVar[bool] = False
    # Pure node types only compute their output from their input: nothing outside the execution
    # sees them run, so running one again after a crash is invisible. The worker may batch their
    # checkpoints and events (group commit); any other node is checkpointed before it starts and
    # before the next node starts, so its side effect is never repeated because of batching.
    pure: ClassVar[bool] = False
    # Loop node types name the output handle that starts their body (run per item).
    body_handle: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.schema: Schema = self.Parameters()

    def output_handles(self, parameters: dict[str, Any]) -> list[str]:
        """Output handles a node with these (raw) parameters can route to."""
        return list(self.handles)

    def run(self, ctx: NodeContext) -> NodeResult | Suspend | Iterate:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<NodeType {self.type}>"
