"""Sub-workflow: run another workflow of the same workspace as a child execution.

The engine does no I/O: the job side provides ``ctx.services["start_child"](workflow_uuid, input,
wait, node_id=...) -> {"uuid": ...}``. With ``wait`` the run suspends (``waiting``) until the
child finishes; the resumption payload ``{"child_uuid", "status", "output", "error"}`` becomes
the node's output (the child's final output) or its error."""
from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema, Suspend
from athena.engine.nodes.registry import register


class SubWorkflowParameters(ParametersSchema):
    workflow_uuid = fields.String(required=True, validate=validate.Length(min=1, max=64),
                                  metadata={"description": "A workflow of the same workspace."})
    input = fields.Raw(load_default=dict, allow_none=True,
                       metadata={"description": "The child's input (its trigger's output); "
                                                "values may be expressions."})
    wait = fields.Boolean(load_default=True,
                          metadata={"description": "Wait for the child and output its final output; "
                                                   "false: continue at once with its execution_uuid."})


@register
class SubWorkflowNode(NodeType):
    type = "sub_workflow"
    description = "Run another workflow of this workspace as a child execution (optionally waiting)."
    Parameters = SubWorkflowParameters

    def run(self, ctx: NodeContext) -> NodeResult | Suspend:
        if ctx.resume is not None:
            return self._child_finished(ctx.resume)
        params = ctx.params()
        start_child = ctx.services.get("start_child")
        if start_child is None:
            raise NodeError("sub-workflows are not available in this context", retryable=False)
        child: dict[str, Any] = start_child(params["workflow_uuid"], params.get("input"), params["wait"],
                                            node_id=ctx.node_id)
        if not params["wait"]:
            return NodeResult({"execution_uuid": child["uuid"]})
        return Suspend("waiting", info={"child_execution_uuid": child["uuid"],
                                        "workflow_uuid": params["workflow_uuid"]})

    @staticmethod
    def _child_finished(payload: Any) -> NodeResult:
        payload = payload if isinstance(payload, dict) else {}
        status = payload.get("status")
        if status == "completed":
            return NodeResult(payload.get("output"))
        error = payload.get("error") or "no error message"
        raise NodeError(f"sub-workflow execution {payload.get('child_uuid')} {status or 'ended'}: {error}",
                        retryable=False)
