from __future__ import annotations

from marshmallow import Schema, fields, validate

from athena.models import VISIBILITIES
from athena.schemas.common import JSON_VALUE_REF, Json, QuerySchema, StrictSchema, Text, UtcDateTime


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
    executions_failed_count = fields.Integer(required=True)
    executions_cancelled_count = fields.Integer(required=True)
    nodes = fields.List(fields.Dict(), required=True)
    edges = fields.List(fields.Dict(), required=True)
    variables = fields.Method("dump_variables")
    has_webhook_secret = fields.Function(lambda w: bool(w.webhook_secret))

    def dump_variables(self, workflow) -> dict:
        from athena.services.workflows import public_variables

        return public_variables(workflow.variables)


_name = validate.Length(min=1, max=255)
# What fields.URL accepts starts with one of its schemes; the pattern says so (and excludes NUL).
_PHOTO_URL = r"^(?:[Hh][Tt][Tt][Pp][Ss]?|[Ff][Tt][Pp][Ss]?)://[^\x00]*$"
# Printable ASCII: the secret is HMAC key material every client must encode the same way, and its
# Fernet encryption must fit the 255-character column (64 bytes at most).
_WEBHOOK_SECRET = r"^[\x20-\x7e]*$"
_GRAPH_PART = {"description": "Validated as a workflow graph (node types, parameters, edges between "
                              "existing nodes; at most ATHENA_MAX_NODES nodes, 500 by default): an "
                              "invalid graph is a 422 listing every problem."}


def _graph_item() -> fields.Raw:
    # Documented as an object; the graph validation rejects anything else, naming it ("nodes[0]
    # must be an object"), which says more than a marshmallow Dict would.
    return fields.Raw(metadata={"type": "object", "additionalProperties": {"$ref": JSON_VALUE_REF}})


class WorkflowWriteSchema(StrictSchema):
    name = Text(validate=_name)
    description = Text(allow_none=True, validate=validate.Length(max=10_000))
    visibility = fields.String(validate=validate.OneOf(VISIBILITIES))
    is_active = fields.Boolean()
    allow_cloning = fields.Boolean()
    allow_account_usage = fields.Boolean()
    template_id = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=2**31 - 1))
    profile_photo_url = fields.URL(
        allow_none=True, validate=[validate.Regexp(_PHOTO_URL, error="Not a valid URL."), validate.Length(max=2048)],
        metadata={"format": "uri", "description": "An absolute http, https, ftp or ftps URL."})
    profile_photo_config = fields.Dict(allow_none=True, values=Json())
    nodes = fields.List(_graph_item(), metadata=_GRAPH_PART)
    edges = fields.List(_graph_item(), metadata=_GRAPH_PART)
    variables = fields.Dict(keys=Text(validate=validate.Length(min=1, max=255)), values=Json(), metadata={
        "description": "Names of 1 to 255 characters. A value {\"secret\": true, \"value\": \"<non-empty "
                       "string>\"} is stored encrypted and shown masked; sending the mask back keeps the "
                       "stored secret."})
    # Write-only; stored Fernet-encrypted.
    webhook_secret = Text(allow_none=True, load_only=True, validate=[
        validate.Regexp(_WEBHOOK_SECRET, error="Must be printable ASCII."),
        validate.Length(min=16, max=64),
    ])


class WorkflowCreateSchema(WorkflowWriteSchema):
    workspace_uuid = Text(required=True, validate=validate.Length(max=64))
    name = Text(required=True, validate=_name)


class WorkflowQuerySchema(QuerySchema):
    workspace_uuid = Text(validate=validate.Length(max=64))
    search = Text(validate=validate.Length(max=255))
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
