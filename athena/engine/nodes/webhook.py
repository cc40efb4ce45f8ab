"""Webhook trigger: outputs the received request as {"body", "query", "headers"}."""
from __future__ import annotations

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register


class WebhookParameters(ParametersSchema):
    """No parameters: request signing uses the workflow's write-only ``webhook_secret``."""


@register
class WebhookTrigger(NodeType):
    type = "webhook"
    pure = True
    description = ("Start the workflow from POST /api/v1/workflows/{uuid}/webhook (a member's token, or an "
                   "HMAC signature when the workflow has a webhook_secret); outputs body, query and headers.")
    Parameters = WebhookParameters
    is_trigger = True

    def run(self, ctx: NodeContext) -> NodeResult:
        return NodeResult(ctx.run.trigger_data)
