"""Stop and error: fails the node (and so the run, unless on_error=continue)."""
from __future__ import annotations

from marshmallow import fields

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register

DEFAULT_MESSAGE = "Workflow stopped with an error"


class StopAndErrorParameters(ParametersSchema):
    message = fields.String(load_default=DEFAULT_MESSAGE,
                            metadata={"description": "Error message; may use expressions."})


@register
class StopAndError(NodeType):
    type = "stop_and_error"
    pure = True
    description = "Fail with a (possibly computed) error message."
    Parameters = StopAndErrorParameters

    def run(self, ctx: NodeContext) -> NodeResult:
        message = ctx.evaluate(ctx.parameters.get("message", DEFAULT_MESSAGE))
        raise NodeError(str(message) if message not in (None, "") else DEFAULT_MESSAGE)
