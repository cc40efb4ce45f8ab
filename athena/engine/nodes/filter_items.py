"""Filter: keeps the items of a list for which a condition holds."""
from __future__ import annotations

from marshmallow import fields

from athena.engine.context import NodeContext
from athena.engine.expressions import is_truthy
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema, as_list
from athena.engine.nodes.registry import register


class FilterParameters(ParametersSchema):
    items = fields.Raw(required=True, metadata={"description": "List expression to filter."})
    condition = fields.Raw(required=True, allow_none=True,
                           metadata={"description": "Expression using 'item' and 'loop.index'."})


@register
class FilterNode(NodeType):
    type = "filter"
    pure = True
    description = "Keep the list items for which the condition (using 'item') is true."
    Parameters = FilterParameters

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.load({**ctx.parameters, "items": ctx.evaluate(ctx.parameters.get("items"))})
        items = as_list(params["items"])
        condition = params["condition"]
        length = len(items)
        kept = []
        for index, item in enumerate(items):
            loop = {"index": index + 1, "index0": index, "first": index == 0,
                    "last": index == length - 1, "length": length}
            if is_truthy(ctx.evaluate(condition, {"item": item, "loop": loop})):
                kept.append(item)
        return NodeResult(kept)
