"""For each: runs the nodes behind its "item" handle once per list item.

The node itself only evaluates its parameters and returns an :class:`Iterate`
plan; the runner drives the iterations (see :mod:`athena.engine.loop`) and
routes the list of iteration results to the "done" handle.
"""
from __future__ import annotations

from marshmallow import fields, validate

from athena.engine.context import NodeContext
from athena.engine.nodes.base import Iterate, NodeType, ParametersSchema, as_list
from athena.engine.nodes.registry import register

MAX_CONCURRENCY = 16


class ForEachParameters(ParametersSchema):
    items = fields.Raw(required=True, allow_none=True,
                       metadata={"description": "List expression; the body runs once per item."})
    concurrency = fields.Integer(
        load_default=1, strict=True, validate=validate.Range(min=1, max=MAX_CONCURRENCY),
        metadata={"description": f"Iterations run at once (1..{MAX_CONCURRENCY}); "
                                 "results keep item order."})


@register
class ForEachNode(NodeType):
    type = "for_each"
    description = ("Run the nodes behind 'item' once per list item (with 'item' and 'loop' in "
                   "scope); 'done' receives the list of iteration results.")
    Parameters = ForEachParameters
    handles = ("item", "done")
    body_handle = "item"

    def run(self, ctx: NodeContext) -> Iterate:
        params = ctx.params()
        items = as_list(params["items"])
        return Iterate(items, params["concurrency"], "done")
