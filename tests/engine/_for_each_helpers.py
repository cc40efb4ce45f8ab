"""Node types and builders shared by the for_each engine tests (no Flask/Redis)."""
from __future__ import annotations

import time
from typing import Any

from athena.engine import (
    LoopProgress, NodeContext, NodeResult, NodeStarted, NodeType, Suspend, registry,
)

from ._engine_helpers import edge, node


# --- test-only node types -------------------------------------------------------------------
class Slow(NodeType):
    """Sleeps longer for earlier items; records how many run at once."""

    type = "test_slow"

    def run(self, ctx: NodeContext) -> NodeResult:
        box = ctx.services
        with box["lock"]:
            box["running"] += 1
            box["peak"] = max(box["peak"], box["running"])
        time.sleep(0.02 * (5 - ctx.scope["loop"]["index0"] % 5))
        with box["lock"]:
            box["running"] -= 1
        return NodeResult(ctx.input * 10)


class Count(NodeType):
    """Appends its input to services["seen"]."""

    type = "test_count"

    def run(self, ctx: NodeContext) -> NodeResult:
        ctx.services.setdefault("seen", []).append(ctx.input)
        return NodeResult(ctx.input)


class Pause(NodeType):
    type = "test_pause"

    def run(self, ctx: NodeContext) -> Suspend:
        return Suspend("paused")


REG = registry.copy()
for _cls in (Slow, Count, Pause):
    REG.register(_cls)


def loop_node(node_id: str = "each", items: Any = "{{ trigger.list }}", concurrency: int = 1,
              settings: dict[str, Any] | None = None) -> dict[str, Any]:
    return node(node_id, "for_each", settings=settings, items=items, concurrency=concurrency)


def two_node_body(concurrency: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """t -> each; each.item -> a -> b; each.done -> after."""
    nodes = [node("t", "manual"), loop_node(concurrency=concurrency),
             node("a", "set", fields={"v": "{{ item * 2 }}", "i": "{{ loop.index }}"}),
             node("b", "set", fields={"v": "{{ input.v + 1 }}", "i": "{{ nodes.a.output.i }}",
                                      "item": "{{ item }}"}),
             node("after", "set", fields={"got": "{{ input }}"})]
    edges = [edge("t", "each"), edge("each", "a", "item"), edge("a", "b"),
             edge("each", "after", "done")]
    return nodes, edges


def progress(events: list[Any]) -> list[LoopProgress]:
    return [ev for ev in events if isinstance(ev, LoopProgress)]


def iterations(events: list[Any], node_id: str) -> list[int | None]:
    return [ev.iteration for ev in events if isinstance(ev, NodeStarted) and ev.node_id == node_id]


EXPECTED = [{"v": 2 * n + 1, "i": i, "item": n} for i, n in enumerate([1, 2, 3, 4, 5], 1)]
