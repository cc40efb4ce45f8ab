"""Approvals (human review) of workflow executions."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from athena.schemas.common import StrictSchema, Text, UtcDateTime

APPROVAL_STATUSES = ("pending", "approved", "rejected", "expired", "cancelled")


class ApprovalUserSchema(Schema):
    class Meta:
        ordered = True

    uuid = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(allow_none=True)


class ApprovalSchema(Schema):
    """A human-review step of an execution: ``pending`` until approved, rejected, expired (timed
    out without a default decision) or cancelled (its execution ended first)."""

    class Meta:
        ordered = True

    id = fields.Integer(required=True)
    uuid = fields.String(required=True)
    workflow_execution_uuid = fields.Function(lambda a: getattr(a, "execution_uuid", None), allow_none=True,
                                              metadata={"type": "string"})
    node_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(APPROVAL_STATUSES)})
    message = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    decided_by = fields.Nested(ApprovalUserSchema, attribute="decider", allow_none=True, dump_default=None,
                               metadata={"description": "The user who decided (null: pending or decided by "
                                                        "the timeout)"})
    decided_at = UtcDateTime(allow_none=True)
    timeout_at = UtcDateTime(allow_none=True)
    default_decision = fields.String(allow_none=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


class ApprovalDecisionSchema(StrictSchema):
    comment = Text(allow_none=True, validate=validate.Length(max=10_000))
