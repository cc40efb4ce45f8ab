"""Set: outputs a dict of (evaluated) fields, optionally merged over the input."""
from __future__ import annotations

from marshmallow import fields as f

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register


class SetParameters(ParametersSchema):
    # "fields" would clash with Schema.fields, hence the attribute name + data_key.
    fields_ = f.Dict(keys=f.String(), values=f.Raw(allow_none=True), required=True,
                     data_key="fields",
                     metadata={"description": "Output fields; values may be expressions."})
    keep_input = f.Boolean(load_default=False,
                           metadata={"description": "Merge the fields over the input dict."})


@register
class SetNode(NodeType):
    type = "set"
    pure = True
    description = "Output a dict of fields whose values may use expressions."
    Parameters = SetParameters

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.params()
        values = params["fields_"]
        if params["keep_input"] and isinstance(ctx.input, dict):
            return NodeResult({**ctx.input, **values})
        return NodeResult(values)
