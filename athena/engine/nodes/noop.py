"""No-op: passes its input through unchanged."""
from __future__ import annotations

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType
from athena.engine.nodes.registry import register


@register
class NoOp(NodeType):
    type = "noop"
    pure = True
    description = "Do nothing; output the input unchanged."

    def run(self, ctx: NodeContext) -> NodeResult:
        return NodeResult(ctx.input)
