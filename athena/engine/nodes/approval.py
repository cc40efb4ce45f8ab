"""Approval: pause the run until a human approves or rejects (human review).

The first run suspends the execution (``paused``; ``wait_till`` = the timeout, if any). The job
side stores a pending approval; a decision (or the timeout) resumes the node with a payload
``{"decision", "comment", "user", "decided_at", "timed_out"}`` which becomes the node's output,
routed to the ``approved`` or ``rejected`` handle."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from marshmallow import fields, validate

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema, Suspend
from athena.engine.nodes.registry import register
from athena.timeutil import iso, parse_iso

DECISIONS = ("approved", "rejected")
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600


class ApprovalParameters(ParametersSchema):
    message = fields.String(required=True, validate=validate.Length(max=10_000),
                            metadata={"description": "What the reviewer is asked; may use expressions."})
    timeout_seconds = fields.Float(allow_none=True, allow_nan=False,
                                   validate=validate.Range(min=0, min_inclusive=False, max=MAX_TIMEOUT_SECONDS),
                                   metadata={"description": "Decide automatically after this many seconds."})
    default_decision = fields.String(allow_none=True, validate=validate.OneOf(DECISIONS),
                                     metadata={"description": "Applied at the timeout; without it the "
                                                              "node fails with 'approval timed out'."})


@register
class ApprovalNode(NodeType):
    type = "approval"
    description = "Pause until a workspace editor approves or rejects; routes to 'approved'/'rejected'."
    Parameters = ApprovalParameters
    handles = DECISIONS

    def run(self, ctx: NodeContext) -> NodeResult | Suspend:
        resume = ctx.resume if isinstance(ctx.resume, dict) else None
        if ctx.resume is not None and not (resume and resume.get("pending")):
            return self._decided(ctx)
        params = ctx.params()
        if resume:  # woken while still pending (before its timeout): keep waiting
            wait_till = parse_iso(resume["timeout_at"]) if resume.get("timeout_at") else None
        else:
            timeout = params.get("timeout_seconds")
            wait_till = ctx.run.now() + timedelta(seconds=float(timeout)) if timeout else None
        info = {"message": params["message"], "default_decision": params.get("default_decision"),
                "timeout_at": iso(wait_till) if wait_till else None}
        return Suspend("paused", wait_till=wait_till, info=info)

    @staticmethod
    def _decided(ctx: NodeContext) -> NodeResult:
        payload: dict[str, Any] = dict(ctx.resume) if isinstance(ctx.resume, dict) else {}
        decision = payload.get("decision")
        if decision is None and payload.get("reason") == "timer":
            # No job-side resolution (e.g. the bare engine): apply the default here.
            default = (ctx.parameters or {}).get("default_decision")
            decision = default if default in DECISIONS else None
            payload = {"decision": decision, "comment": None, "user": None,
                       "decided_at": iso(ctx.run.now()), "timed_out": True}
        if decision not in DECISIONS:
            raise NodeError("approval timed out", retryable=False)
        output = {"decision": decision, "comment": payload.get("comment"), "user": payload.get("user"),
                  "decided_at": payload.get("decided_at"), "timed_out": bool(payload.get("timed_out"))}
        return NodeResult(output, decision)
