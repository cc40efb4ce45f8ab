from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from athena.engine.nodes import registry
from athena.engine.validation import MAX_ATTEMPTS_LIMIT, ON_ERROR_CHOICES
from athena.models import VISIBILITIES
from athena.schemas.common import (
    JSON_VALUE_REF, Json, QuerySchema, StrictSchema, Text, UtcDateTime, not_blank,
)
from athena.services.secrets import public_variables

# -- the workflow graph: Node and Edge ------------------------------------------------------------
#
# What athena.engine.graph accepts, item by item; what needs the whole graph (a registered type's
# parameters, edges between existing nodes, handles, cycles, loop bodies) stays with the graph
# validation (a 422 naming the node or edge). Both keep the keys they do not know (an editor's
# layout data and the like): JsonValue, like every free-form part.


class _OpenSchema(StrictSchema):
    """Typed known keys, other keys kept as they are (documented as JsonValue)."""

    OPENAPI_ADDITIONAL_PROPERTIES = {"$ref": JSON_VALUE_REF}

    class Meta(StrictSchema.Meta):
        unknown = INCLUDE


class NodePositionSchema(_OpenSchema):
    """Where the editor draws the node."""

    x = fields.Float()
    y = fields.Float()


class NodeRetrySchema(StrictSchema):
    max_attempts = fields.Integer(validate=validate.Range(min=1, max=MAX_ATTEMPTS_LIMIT),
                                  metadata={"description": "Attempts in all, the first one included (default 1)."})
    backoff = fields.Float(validate=validate.Range(min=0),
                           metadata={"description": "Seconds before the first retry, doubling after each."})


class NodeSettingsSchema(_OpenSchema):
    """How the node runs."""

    timeout = fields.Float(allow_none=True, validate=validate.Range(min=0, min_inclusive=False),
                           metadata={"exclusiveMinimum": True, "description": "Seconds one attempt may take."})
    on_error = fields.String(allow_none=True, validate=validate.OneOf(ON_ERROR_CHOICES), metadata={
        "description": "stop (default): the execution fails; continue: the node's 'error' handle gets the error."})
    retry = fields.Nested(NodeRetrySchema, allow_none=True)


class NodeSchema(_OpenSchema):
    """One node of a workflow graph (documented as Node)."""

    id = Text(required=True, validate=[not_blank("A node id may not be blank."), validate.Length(max=255)],
              metadata={"description": "Unique in the graph; edges refer to it."})
    type = fields.String(required=True, metadata={
        "enum": sorted(t.type for t in registry.types()),
        "description": "A node type of GET /api/v1/node-types."})
    name = Text(allow_none=True, validate=validate.Length(max=255),
                metadata={"description": "Shown in the editor and the run log; the id when absent or empty."})
    parameters = fields.Dict(keys=Text(), values=Json(), allow_none=True, metadata={
        "description": "Checked against the type's parameter schema (GET /api/v1/node-types); a value "
                       "holding a {{ expression }} is checked for syntax, and against the schema when the node runs."})
    position = fields.Nested(NodePositionSchema, allow_none=True)
    settings = fields.Nested(NodeSettingsSchema, allow_none=True)


class EdgeSchema(_OpenSchema):
    """A connection from one node's output handle to another node (documented as Edge)."""

    id = Text(allow_none=True, validate=validate.Length(max=255),
              metadata={"description": "Unique in the graph; e and the edge's index (e0, e1...) when absent or empty."})
    source = Text(required=True, validate=validate.Length(min=1, max=255), metadata={"description": "A node id."})
    target = Text(required=True, validate=validate.Length(min=1, max=255), metadata={"description": "A node id."})
    source_handle = Text(allow_none=True, validate=validate.Length(max=255), metadata={
        "description": "An output handle of the source node's type (main when absent or empty)."})
    target_handle = Text(allow_none=True, validate=validate.Length(max=255),
                         metadata={"description": "main when absent or empty."})


def _graph_messages(label: str, value: Any, messages: Any) -> list[str]:
    """``{1: {"id": [...]}}`` as the graph validation words it: ``nodes[1]: id: ...``, with the
    node's id when it has one (``node 'x' (nodes[1]): ...``)."""
    if not isinstance(messages, dict):  # not a list at all
        return messages if isinstance(messages, list) else [messages]
    out: list[str] = []
    for index, problem in messages.items():
        item = value[index] if isinstance(index, int) and 0 <= index < len(value) else None
        where = f"{label}[{index}]"
        if not isinstance(item, dict):
            out.append(f"{where} must be an object")
            continue
        if isinstance(item.get("id"), str) and item["id"]:
            where = f"{label[:-1]} '{item['id']}' ({where})"
        out.extend(f"{where}: {path}: {text}" if path else f"{where}: {text}" for path, text in _flat(problem))
    return out


def _flat(messages: Any, path: str = "") -> list[tuple[str, str]]:
    """Nested marshmallow messages as (dotted path, message) pairs."""
    if isinstance(messages, dict):
        return [pair for key, sub in messages.items()
                for pair in _flat(sub, path if key == "_schema" else f"{path}.{key}".lstrip("."))]
    if isinstance(messages, list):
        return [pair for sub in messages for pair in _flat(sub, path)]
    return [(path, str(messages))]


class _GraphItems(fields.List):
    """``nodes``/``edges``: every item checked as a Node/Edge; each problem names the item by its
    index and node id, as the graph validation's messages do (``node 'x' (nodes[1]): ...``)."""

    def __init__(self, schema: type[Schema], label: str, **kwargs: Any) -> None:
        super().__init__(fields.Nested(schema), **kwargs)
        self.label = label

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as exc:
            raise ValidationError(_graph_messages(self.label, value, exc.messages)) from exc


class _AsStored(fields.Nested):
    """Documented as the nested schema; dumped as stored (the keys a client kept stay)."""

    def _serialize(self, nested_obj: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return nested_obj


# -- ProfilePhotoConfig ---------------------------------------------------------------------------


class ProfilePhotoCropSchema(StrictSchema):
    """The part of the photo shown: fractions of its width and height, from the top left."""

    x = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    y = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    width = fields.Float(required=True, validate=validate.Range(min=0, max=1, min_inclusive=False),
                         metadata={"exclusiveMinimum": True})
    height = fields.Float(required=True, validate=validate.Range(min=0, max=1, min_inclusive=False),
                          metadata={"exclusiveMinimum": True})


class ProfilePhotoConfigSchema(StrictSchema):
    """How the workflow's avatar is drawn (documented as ProfilePhotoConfig): the photo at
    profile_photo_url cropped, or an emoji or icon on a background color."""

    background_color = Text(allow_none=True, metadata={"description": "#RRGGBB"},
                            validate=validate.Regexp(r"^#[0-9A-Fa-f]{6}$", error="Not a #RRGGBB color."))
    emoji = Text(allow_none=True, validate=[not_blank(), validate.Length(max=16)],
                 metadata={"description": "One emoji (a few code points at most)."})
    icon = Text(allow_none=True, validate=validate.Regexp(r"^[a-z0-9]+(?:-[a-z0-9]+)*$", error="Not an icon name."),
                metadata={"description": "An icon name (lowercase words joined by '-')."})
    crop = fields.Nested(ProfilePhotoCropSchema, allow_none=True)
    zoom = fields.Float(allow_none=True, validate=validate.Range(min=1, max=10))


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
    profile_photo_config = fields.Nested(ProfilePhotoConfigSchema, allow_none=True)
    visibility = fields.String(required=True, metadata={"enum": list(VISIBILITIES)})
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
    nodes = fields.List(_AsStored(NodeSchema), required=True)
    edges = fields.List(_AsStored(EdgeSchema), required=True)
    variables = fields.Method("dump_variables", metadata={
        "type": "object", "additionalProperties": {"$ref": JSON_VALUE_REF},
        "description": "A secret variable shows as {\"secret\": true, \"value\": \"********\"}."})
    has_webhook_secret = fields.Function(lambda w: bool(w.webhook_secret), metadata={"type": "boolean"})

    def dump_variables(self, workflow) -> dict:
        return public_variables(workflow.variables)


_name = validate.Length(min=1, max=255)
# An absolute http(s)/ftp(s) URL: the scheme, "://", a host, and no character a URL may not
# carry unescaped (controls, space, "<>\^`{|}). The pattern is the whole check, so the document
# states it exactly (a "format: uri" would add RFC 3986 rules nothing here checks).
_URL_CHAR = r'[^\x00-\x20\x7f"<>\\^`{|}]'
_PHOTO_URL = rf'^(?:[Hh][Tt][Tt][Pp][Ss]?|[Ff][Tt][Pp][Ss]?)://[^\x00-\x20\x7f"<>\\^`{{|}}/?#]{_URL_CHAR}*$'
# Printable ASCII: the secret is HMAC key material every client must encode the same way, and its
# Fernet encryption must fit the 255-character column (64 bytes at most).
_WEBHOOK_SECRET = r"^[\x20-\x7e]*$"
_GRAPH_PART = {"description": "Validated as a workflow graph (node types, parameters, edges between "
                              "existing nodes; at most ATHENA_MAX_NODES nodes, 500 by default): an "
                              "invalid graph is a 422 listing every problem."}


class WorkflowWriteSchema(StrictSchema):
    name = Text(validate=_name)
    description = Text(allow_none=True, validate=validate.Length(max=10_000))
    visibility = fields.String(validate=validate.OneOf(VISIBILITIES))
    is_active = fields.Boolean()
    allow_cloning = fields.Boolean()
    allow_account_usage = fields.Boolean()
    template_id = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=2**31 - 1))
    profile_photo_url = Text(
        allow_none=True, validate=[validate.Regexp(_PHOTO_URL, error="Not a valid URL."), validate.Length(max=2048)],
        metadata={"description": "An absolute http, https, ftp or ftps URL."})
    profile_photo_config = fields.Nested(ProfilePhotoConfigSchema, allow_none=True)
    nodes = _GraphItems(NodeSchema, "nodes", metadata=_GRAPH_PART)
    edges = _GraphItems(EdgeSchema, "edges", metadata=_GRAPH_PART)
    variables = fields.Dict(keys=Text(validate=validate.Length(min=1, max=255)), values=Json(), metadata={
        "description": "Names of 1 to 255 characters. A value {\"secret\": true, \"value\": \"...\"} (value a "
                       "non-empty string) is stored encrypted and shown masked; sending the mask back keeps the "
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
    parameters = fields.Dict(required=True, metadata={
        "additionalProperties": {"$ref": JSON_VALUE_REF},
        "description": "The JSON Schema of the type's parameters."})
