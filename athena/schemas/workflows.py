from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from athena.models import VISIBILITIES
from athena.schemas.common import QuerySchema, StrictSchema, UtcDateTime


class WorkflowSchema(Schema):
    """The documented Workflow resource, plus the graph (nodes, edges, variables)."""

    class Meta:
        ordered = True

    id = fields.Integer(required=True)
    uuid = fields.String(required=True)
    user_id = fields.Integer(required=True)
    workspace_id = fields.Integer(required=True)
    template_id = fields.Integer(allow_none=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    profile_photo_url = fields.String(allow_none=True)
    profile_photo_config = fields.Dict(allow_none=True)
    visibility = fields.String(required=True)
    is_active = fields.Boolean(required=True)
    is_owner = fields.Boolean(required=True)
    is_favorite = fields.Boolean(required=True)
    trigger_count = fields.Integer(required=True)
    allow_cloning = fields.Boolean(required=True)
    allow_account_usage = fields.Boolean(required=True)
    last_used_at = UtcDateTime(allow_none=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)
    deleted_at = UtcDateTime(allow_none=True)
    executions_count = fields.Integer(required=True)
    executions_in_progress_count = fields.Integer(required=True)
    executions_for_review_count = fields.Integer(required=True)
    executions_completed_count = fields.Integer(required=True)
    nodes = fields.List(fields.Dict(), required=True)
    edges = fields.List(fields.Dict(), required=True)
    variables = fields.Method("dump_variables")
    has_webhook_secret = fields.Function(lambda w: bool(w.webhook_secret))

    def dump_variables(self, workflow) -> dict:
        from athena.services.workflows import public_variables

        return public_variables(workflow.variables)


_name = validate.Length(min=1, max=255)


def _at_most_64_bytes(value: str) -> None:
    if len(value.encode()) > 64:
        raise ValidationError("Must be at most 64 bytes in UTF-8.")


class WorkflowWriteSchema(StrictSchema):
    name = fields.String(validate=_name)
    description = fields.String(allow_none=True, validate=validate.Length(max=10_000))
    visibility = fields.String(validate=validate.OneOf(VISIBILITIES))
    is_active = fields.Boolean()
    allow_cloning = fields.Boolean()
    allow_account_usage = fields.Boolean()
    template_id = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=2**31 - 1))
    profile_photo_url = fields.URL(allow_none=True, validate=validate.Length(max=2048))
    profile_photo_config = fields.Dict(allow_none=True)
    nodes = fields.List(fields.Raw())
    edges = fields.List(fields.Raw())
    variables = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=255)))
    # Write-only; stored Fernet-encrypted, which must fit the 255-character column: <= 64 bytes.
    webhook_secret = fields.String(allow_none=True, load_only=True, validate=[
        validate.Length(min=16, max=64),
        _at_most_64_bytes,
    ])


class WorkflowCreateSchema(WorkflowWriteSchema):
    workspace_uuid = fields.String(required=True, validate=validate.Length(max=64))
    name = fields.String(required=True, validate=_name)


class WorkflowQuerySchema(QuerySchema):
    workspace_uuid = fields.String(validate=validate.Length(max=64))
    search = fields.String(validate=validate.Length(max=255))
    visibility = fields.String(validate=validate.OneOf(VISIBILITIES))
    is_active = fields.Boolean()
    is_favorite = fields.Boolean()
    sort_by = fields.String(
        load_default="created_at", validate=validate.OneOf(["created_at", "updated_at", "name", "last_used_at"])
    )
    sort_direction = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))


class NodeTypeSchema(Schema):
    type = fields.String(required=True)
    description = fields.String(required=True)
    is_trigger = fields.Boolean(required=True)
    handles = fields.List(fields.String(), required=True)
    parameters = fields.Dict(required=True)
