"""Webhook trigger: outputs the received request as {"body", "query", "headers"}."""
from __future__ import annotations

from marshmallow import fields

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register


class WebhookParameters(ParametersSchema):
    secret = fields.String(allow_none=True,
                           metadata={"description": "Shared secret checked by the API layer."})


@register
class WebhookTrigger(NodeType):
    type = "webhook"
    description = "Start the workflow from an HTTP request; outputs body, query and headers."
    Parameters = WebhookParameters
    is_trigger = True

    def run(self, ctx: NodeContext) -> NodeResult:
        return NodeResult(ctx.run.trigger_data)
