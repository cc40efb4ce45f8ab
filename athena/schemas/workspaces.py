from __future__ import annotations

from marshmallow import Schema, fields, validate

from athena.models import ROLES
from athena.schemas.common import QuerySchema, StrictSchema, Text, UtcDateTime


class WorkspaceSchema(Schema):
    class Meta:
        ordered = True

    id = fields.Integer(required=True)
    uuid = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    organization_multiplai_id = fields.Function(
        lambda w: w.organization.multiplai_id if w.organization else None, allow_none=True,
        metadata={"type": "string"},
    )
    user_id = fields.Integer()
    role = fields.Function(lambda w: getattr(w, "current_role", None), allow_none=True,
                           metadata={"type": "string", "enum": list(ROLES), "description": "The caller's role."})
    members_count = fields.Function(lambda w: getattr(w, "members_count", None), allow_none=True,
                                    metadata={"type": "integer"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    deleted_at = UtcDateTime(allow_none=True)


class WorkspaceCreateSchema(StrictSchema):
    name = Text(required=True, validate=validate.Length(min=1, max=255))
    description = Text(allow_none=True, validate=validate.Length(max=5000))


class WorkspaceUpdateSchema(StrictSchema):
    name = Text(validate=validate.Length(min=1, max=255))
    description = Text(allow_none=True, validate=validate.Length(max=5000))


class WorkspaceQuerySchema(QuerySchema):
    search = Text(validate=validate.Length(max=255))


class MemberSchema(Schema):
    class Meta:
        ordered = True

    user_uuid = fields.Function(lambda m: m.user.uuid, metadata={"type": "string"})
    email = fields.Function(lambda m: m.user.email, metadata={"type": "string"})
    name = fields.Function(lambda m: m.user.name, allow_none=True, metadata={"type": "string"})
    role = fields.String(metadata={"enum": list(ROLES)})
    created_at = UtcDateTime()


class MemberCreateSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=255))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class MemberUpdateSchema(StrictSchema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
