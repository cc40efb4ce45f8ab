"""Merge: joins branches; runs once all incoming edges are resolved."""
from __future__ import annotations

from marshmallow import fields, validate

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register


class MergeParameters(ParametersSchema):
    mode = fields.String(load_default="all", validate=validate.OneOf(["all", "first"]),
                         metadata={"description": "'all': {source_id: output}; "
                                                  "'first': the first active input."})


@register
class MergeNode(NodeType):
    type = "merge"
    pure = True
    description = "Combine the outputs of the active incoming branches."
    Parameters = MergeParameters

    def run(self, ctx: NodeContext) -> NodeResult:
        mode = ctx.params()["mode"]
        if mode == "first":
            return NodeResult(next(iter(ctx.inputs.values()), None))
        return NodeResult(dict(ctx.inputs))
