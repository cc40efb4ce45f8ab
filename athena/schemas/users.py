from __future__ import annotations

from marshmallow import Schema, fields, validate

from athena.schemas.common import StrictSchema, Text, UtcDateTime


class OrganizationSchema(Schema):
    id = fields.Integer()
    uuid = fields.String()
    multiplai_id = fields.String()
    name = fields.String()


class UserSchema(Schema):
    class Meta:
        ordered = True

    id = fields.Integer(required=True)
    uuid = fields.String(required=True)
    multiplai_id = fields.String(required=True)
    name = fields.String()
    email = fields.String(required=True)
    is_admin = fields.Boolean()
    organization = fields.Nested(OrganizationSchema, allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class SignInSchema(StrictSchema):
    email = Text(required=True, validate=validate.Length(min=1, max=255))
    password = Text(required=True, load_only=True, validate=validate.Length(min=1, max=1024))
    device_name = Text(validate=validate.Length(max=255))


class TokenSchema(Schema):
    class Meta:
        ordered = True

    token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_at = UtcDateTime(allow_none=True)
    user = fields.Nested(UserSchema, required=True)


class MessageSchema(Schema):
    message = fields.String(required=True)
