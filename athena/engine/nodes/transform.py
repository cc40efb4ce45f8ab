"""Transform: reshapes data with a JMESPath expression."""
from __future__ import annotations

import functools
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from marshmallow import ValidationError, fields, validate

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError
from athena.engine.expressions import contains_expression
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register

LANGUAGES = ["jmespath"]


@functools.lru_cache(maxsize=512)
def _compile(expression: str) -> Any:
    return jmespath.compile(expression)


def _check_syntax(expression: str) -> None:
    if contains_expression(expression):
        return
    try:
        _compile(expression)
    except JMESPathError as exc:
        raise ValidationError(f"invalid JMESPath expression: {exc}") from None


class TransformParameters(ParametersSchema):
    expression = fields.String(required=True, validate=_check_syntax,
                               metadata={"description": "JMESPath expression."})
    language = fields.String(
        load_default="jmespath",
        validate=validate.OneOf(LANGUAGES, error="language '{input}' is not supported "
                                                 "(supported: {choices})"))
    input = fields.Raw(allow_none=True,
                       metadata={"description": "Data to transform; defaults to the node input."})


@register
class TransformNode(NodeType):
    type = "transform"
    pure = True
    description = "Reshape data with a JMESPath expression."
    Parameters = TransformParameters

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.params()
        data = params["input"] if "input" in params else ctx.input
        try:
            return NodeResult(_compile(params["expression"]).search(data))
        except JMESPathError as exc:
            raise NodeError(f"JMESPath error: {exc}", retryable=False) from None
