"""Manual trigger: starts a run by hand; outputs the execution input."""
from __future__ import annotations

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType
from athena.engine.nodes.registry import register


@register
class ManualTrigger(NodeType):
    type = "manual"
    pure = True
    description = "Start the workflow by hand; outputs the execution input."
    is_trigger = True

    def run(self, ctx: NodeContext) -> NodeResult:
        return NodeResult(ctx.run.trigger_data)
