"""Switch: routes to the first case whose value equals the evaluated value."""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validates

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register

DEFAULT_HANDLE = "default"


class SwitchParameters(ParametersSchema):
    value = fields.Raw(required=True, allow_none=True,
                       metadata={"description": "Value to match; usually an expression."})
    cases = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), required=True,
                        metadata={"description": "Handle name -> value to compare with."})

    @validates("cases")
    def _check_cases(self, cases: dict[str, Any], **_: Any) -> None:
        for name in cases:
            if not name or name in (DEFAULT_HANDLE, "error"):
                raise ValidationError(f"invalid case name {name!r} (reserved or empty)")


@register
class SwitchNode(NodeType):
    type = "switch"
    pure = True
    description = "Route the input to the first case equal to a value, else to 'default'."
    Parameters = SwitchParameters
    handles = (DEFAULT_HANDLE,)

    def output_handles(self, parameters: dict[str, Any]) -> list[str]:
        cases = parameters.get("cases")
        names = [name for name in cases if isinstance(name, str)] if isinstance(cases, dict) else []
        return [*names, DEFAULT_HANDLE]

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.params()
        value = params["value"]
        for name, expected in params["cases"].items():
            if expected == value:
                return NodeResult(ctx.input, name)
        return NodeResult(ctx.input, DEFAULT_HANDLE)
