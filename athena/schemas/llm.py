"""Request and response shapes of providers, accounts and large language models (docs/llm.md)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from athena.models import CAPABILITIES
from athena.schemas.common import QuerySchema, StrictSchema, Text, UtcDateTime, not_blank
from athena.services.llm_accounts import public_credentials
from athena.services.llm_catalog import CREDENTIAL_FIELDS, CREDENTIAL_TYPES

_name = validate.Length(min=1, max=255)
_uuid = validate.Length(max=64)
_URL = r'^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f"<>\\^`{|}/?#]+[^\x00-\x20\x7f"<>\\^`{|}]*$'
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER_VALUE = r"^[\x20-\x7e\t]*$"
_SLUG = r"^[a-z][a-z0-9_]{0,63}$"


class ProviderSummarySchema(Schema):
    class Meta:
        ordered = True

    uuid = fields.String(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)


class AuthenticationFieldSchema(Schema):
    """One credential field an account of the provider may or must give."""

    class Meta:
        ordered = True

    name = fields.String(required=True, metadata={"enum": list(CREDENTIAL_FIELDS)})
    label = fields.String(required=True)
    type = fields.String(required=True, metadata={"enum": sorted(set(CREDENTIAL_TYPES.values()))})
    required = fields.Boolean(required=True)
    secret = fields.Boolean(required=True, metadata={"description": "Stored encrypted and shown masked."})
    description = fields.String(allow_none=True)
    default = fields.String(allow_none=True)


class AuthenticationConfigSchema(Schema):
    """Which credential fields an account needs (documented as AuthenticationConfig)."""

    fields_ = fields.List(fields.Nested(AuthenticationFieldSchema), data_key="fields", attribute="fields",
                          required=True)


class AuthenticationFieldWriteSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.OneOf(CREDENTIAL_FIELDS))
    label = Text(validate=validate.Length(max=255))
    required = fields.Boolean()
    secret = fields.Boolean(metadata={"description": "api_key and extra_headers are always secret."})
    description = Text(allow_none=True, validate=validate.Length(max=2000))
    default = Text(allow_none=True, validate=validate.Length(max=2048))


class AuthenticationConfigWriteSchema(StrictSchema):
    fields_ = fields.List(fields.Nested(AuthenticationFieldWriteSchema), data_key="fields", attribute="fields",
                          required=True, validate=validate.Length(max=len(CREDENTIAL_FIELDS)))


class ProviderSchema(Schema):
    """A kind of LLM service: a built-in (workspace_id null, read-only) or a workspace's own."""

    class Meta:
        ordered = True

    id = fields.Integer(required=True)
    uuid = fields.String(required=True)
    workspace_id = fields.Integer(allow_none=True)
    user_id = fields.Integer(allow_none=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    is_builtin = fields.Boolean(required=True)
    base_url = fields.String(allow_none=True, metadata={"description": "Used when an account gives none."})
    authentication_config = fields.Nested(AuthenticationConfigSchema, required=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)
    deleted_at = UtcDateTime(allow_none=True)


class ProviderWriteSchema(StrictSchema):
    workspace_uuid = Text(validate=_uuid, metadata={"description": "On update: ignored when it is the provider's "
                                                                   "own workspace, a 422 otherwise."})
    slug = Text(validate=validate.Regexp(_SLUG, error="Lowercase letters, digits and _, starting with a letter."))
    name = Text(validate=[not_blank(), _name])
    description = Text(allow_none=True, validate=validate.Length(max=10_000))
    base_url = Text(allow_none=True, validate=[validate.Regexp(_URL, error="Not an http(s) URL."),
                                               validate.Length(max=2048)])
    authentication_config = fields.Nested(AuthenticationConfigWriteSchema)


class ProviderCreateSchema(ProviderWriteSchema):
    workspace_uuid = Text(required=True, validate=_uuid)
    slug = Text(required=True, validate=validate.Regexp(_SLUG, error="Lowercase letters, digits and _, "
                                                                     "starting with a letter."))
    name = Text(required=True, validate=[not_blank(), _name])


class ProviderQuerySchema(QuerySchema):
    workspace_uuid = Text(validate=_uuid, metadata={"description": "The built-ins and this workspace's own."})
    is_builtin = fields.Boolean()
    search = Text(validate=validate.Length(max=255))
    sort_by = fields.String(load_default="id", validate=validate.OneOf(["id", "name", "slug", "created_at"]))
    sort_direction = fields.String(load_default="asc", validate=validate.OneOf(["asc", "desc"]))


class CredentialsWriteSchema(StrictSchema):
    """What the provider's authentication_config asks for. A secret sent back as shown (masked)
    keeps the stored one; null removes an optional field."""

    api_key = Text(allow_none=True, validate=[validate.Regexp(r"^[\x21-\x7e\u2026]*$", error="Printable ASCII, no spaces."),
                                              validate.Length(max=4096)])
    base_url = Text(allow_none=True, validate=[validate.Regexp(_URL, error="Not an http(s) URL."),
                                               validate.Length(max=2048)])
    organization = Text(allow_none=True, validate=[validate.Regexp(r"^[\x21-\x7e]*$", error="Printable ASCII, no spaces."),
                                                   validate.Length(max=255)])
    extra_headers = fields.Dict(keys=fields.String(validate=[validate.Regexp(_HEADER_NAME), validate.Length(max=128)]),
                                values=fields.String(validate=[validate.Regexp(_HEADER_VALUE),
                                                               validate.Length(max=4096)]),
                                allow_none=True, validate=validate.Length(max=20))


class AccountSchema(Schema):
    """A workspace's credentials for one provider."""

    class Meta:
        ordered = True

    id = fields.Integer(required=True)
    uuid = fields.String(required=True)
    workspace_id = fields.Integer(required=True)
    user_id = fields.Integer(allow_none=True)
    provider_id = fields.Integer(required=True)
    provider = fields.Nested(ProviderSummarySchema, required=True)
    name = fields.String(required=True)
    is_default = fields.Boolean(required=True)
    credentials = fields.Method("dump_credentials", metadata={
        "type": "object", "description": "Secret fields masked (first 3 and last 4 characters of 12 or more, else \u2026).",
        "properties": {"api_key": {"type": "string", "nullable": True}, "base_url": {"type": "string", "nullable": True},
                       "organization": {"type": "string", "nullable": True},
                       "extra_headers": {"type": "object", "nullable": True,
                                         "additionalProperties": {"type": "string"}}}})
    last_verified_at = UtcDateTime(allow_none=True)
    sync_status = fields.String(required=True, metadata={
        "enum": ["pending", "queued", "syncing", "synced", "failed"],
        "description": "The model sync job's state (POST /api/v1/accounts/{uuid}/sync-models runs it again)."})
    sync_error = fields.String(allow_none=True)
    models_synced_at = UtcDateTime(allow_none=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)
    deleted_at = UtcDateTime(allow_none=True)

    def dump_credentials(self, account) -> dict:
        return public_credentials(account)


class AccountWriteSchema(StrictSchema):
    workspace_uuid = Text(validate=_uuid, metadata={"description": "On update: ignored when it is the account's "
                                                                   "own workspace, a 422 otherwise."})
    provider_uuid = Text(validate=_uuid)
    name = Text(validate=[not_blank(), _name])
    is_default = fields.Boolean(metadata={"description": "The workspace's default account (one at a time); the "
                                                         "first account of a workspace is the default."})
    credentials = fields.Nested(CredentialsWriteSchema)


class AccountCreateSchema(AccountWriteSchema):
    workspace_uuid = Text(required=True, validate=_uuid)
    provider_uuid = Text(required=True, validate=_uuid, metadata={"description": "GET /api/v1/providers"})
    name = Text(required=True, validate=[not_blank(), _name])
    credentials = fields.Nested(CredentialsWriteSchema, required=True)


class VerifyArgsSchema(QuerySchema):
    verify = fields.Boolean(load_default=True, metadata={
        "description": "Check the credentials with the provider's models listing first (422 with the provider's "
                       "reason when refused); false skips the check."})


class AccountQuerySchema(QuerySchema):
    workspace_uuid = Text(validate=_uuid)
    provider_uuid = Text(validate=_uuid)
    is_default = fields.Boolean()
    search = Text(validate=validate.Length(max=255))
    sort_by = fields.String(load_default="created_at", validate=validate.OneOf(["created_at", "updated_at", "name"]))
    sort_direction = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))


class LargeLanguageModelSchema(Schema):
    """A model an account reaches, with what Athena knows of it (null when unknown)."""

    class Meta:
        ordered = True

    id = fields.Integer(required=True)
    uuid = fields.String(required=True)
    workspace_id = fields.Integer(required=True)
    account_id = fields.Integer(required=True)
    account_uuid = fields.Function(lambda m: m.account.uuid, metadata={"type": "string"})
    provider = fields.Nested(ProviderSummarySchema, required=True)
    model_id = fields.String(required=True, metadata={"description": "The provider's id, e.g. gpt-4.1-mini."})
    name = fields.String(required=True)
    owned_by = fields.String(allow_none=True)
    family = fields.String(allow_none=True)
    is_known = fields.Boolean(required=True, metadata={"description": "In the shipped table of known models."})
    context_window = fields.Integer(allow_none=True)
    max_output_tokens = fields.Integer(allow_none=True)
    supports_tools = fields.Boolean(required=True)
    supports_json_schema = fields.Boolean(required=True)
    supports_streaming = fields.Boolean(required=True)
    supports_vision = fields.Boolean(required=True)
    capabilities = fields.Function(lambda m: [c for c in CAPABILITIES if getattr(m, f"supports_{c}")],
                                   metadata={"type": "array", "items": {"type": "string", "enum": list(CAPABILITIES)}})
    input_price_per_million = fields.Decimal(as_string=True, allow_none=True,
                                             metadata={"description": "USD per million input tokens; null: unpriced."})
    output_price_per_million = fields.Decimal(as_string=True, allow_none=True,
                                              metadata={"description": "USD per million output tokens."})
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)
    deleted_at = UtcDateTime(allow_none=True)


class LargeLanguageModelQuerySchema(QuerySchema):
    workspace_uuid = Text(validate=_uuid)
    account_uuid = Text(validate=_uuid)
    provider_uuid = Text(validate=_uuid)
    provider = Text(validate=validate.Length(max=64), metadata={"description": "A provider slug, e.g. openai."})
    capability = fields.List(fields.String(validate=validate.OneOf(CAPABILITIES)), metadata={
        "description": "Only models with every capability given (repeat the parameter for several)."})
    is_known = fields.Boolean()
    search = Text(validate=validate.Length(max=255), metadata={"description": "In model_id and owned_by."})
    sort_by = fields.String(load_default="model_id", validate=validate.OneOf(
        ["model_id", "created_at", "context_window", "input_price_per_million", "output_price_per_million"]))
    sort_direction = fields.String(load_default="asc", validate=validate.OneOf(["asc", "desc"]))
