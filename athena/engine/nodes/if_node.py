"""If: routes its input to the "true" or "false" handle."""
from __future__ import annotations

from marshmallow import fields

from athena.engine.context import NodeContext
from athena.engine.expressions import is_truthy
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register


class IfParameters(ParametersSchema):
    condition = fields.Raw(required=True, allow_none=True,
                           metadata={"description": "Expression; 'false', '0' and '' are false."})


@register
class IfNode(NodeType):
    type = "if"
    pure = True
    description = "Route the input to 'true' or 'false' by the truthiness of a condition."
    Parameters = IfParameters
    handles = ("true", "false")

    def run(self, ctx: NodeContext) -> NodeResult:
        condition = ctx.params()["condition"]
        return NodeResult(ctx.input, "true" if is_truthy(condition) else "false")
