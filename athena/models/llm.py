"""The AI half's foundation: providers (kinds of LLM service), accounts (a workspace's encrypted
credentials for one provider), the large language models an account reaches, and one usage row
per model call (athena/services/llm_client.py)."""
from __future__ import annotations

from athena.extensions import db
from athena.models.base import IdMixin, JSONType, SoftDeleteMixin, TimestampMixin, new_uuid
from athena.timeutil import utcnow

CAPABILITIES = ("tools", "json_schema", "streaming", "vision")
SYNC_STATUSES = ("pending", "queued", "syncing", "synced", "failed")
CALLER_TYPES = ("execution_node", "generation", "prompt_run", "agent_run")
USAGE_STATUSES = ("success", "error", "refused", "rate_limited", "timeout", "unreachable", "cancelled")


class Provider(IdMixin, TimestampMixin, SoftDeleteMixin, db.Model):
    """A kind of LLM service. Built-ins (``workspace_id`` NULL, ``is_builtin``) are seeded by a
    migration and read-only; custom ones belong to a workspace."""

    __tablename__ = "providers"
    __table_args__ = (db.Index("ix_providers_workspace_slug", "workspace_id", "slug"),)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id"), nullable=True, index=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    slug = db.Column(db.String(64), nullable=False)
    name = db.Column(db.String(255), nullable=False)
    description = db.Column(db.Text, nullable=True)
    is_builtin = db.Column(db.Boolean, nullable=False, default=False)
    # The API base used when an account gives none (the openai client's base_url).
    base_url = db.Column(db.String(2048), nullable=True)
    # {"fields": [{"name", "label", "type", "required", "secret", "description"}]}
    authentication_config = db.Column(JSONType, nullable=False, default=dict)


class Account(IdMixin, TimestampMixin, SoftDeleteMixin, db.Model):
    """A workspace's credentials for one provider; secret fields stored encrypted (athena/crypto.py)."""

    __tablename__ = "accounts"
    __table_args__ = (db.Index("ix_accounts_workspace_created", "workspace_id", "created_at"),)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id"), nullable=False, index=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    provider_id = db.Column(db.Integer, db.ForeignKey("providers.id"), nullable=False, index=True)
    name = db.Column(db.String(255), nullable=False)
    is_default = db.Column(db.Boolean, nullable=False, default=False)
    credentials = db.Column(JSONType, nullable=False, default=dict)
    last_verified_at = db.Column(db.DateTime, nullable=True)
    sync_status = db.Column(db.String(16), nullable=False, default="pending")
    sync_error = db.Column(db.Text, nullable=True)
    models_synced_at = db.Column(db.DateTime, nullable=True)

    provider = db.relationship("Provider", lazy="joined")


class LargeLanguageModel(IdMixin, TimestampMixin, SoftDeleteMixin, db.Model):
    """A model an account reaches: from the provider's models listing, merged with the shipped
    table of known models (athena/data/known_models.json)."""

    __tablename__ = "large_language_models"
    __table_args__ = (
        db.UniqueConstraint("account_id", "model_id", name="uq_large_language_models_account_model"),
        db.Index("ix_large_language_models_workspace_model", "workspace_id", "model_id"),
    )
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id"), nullable=False, index=True)
    account_id = db.Column(db.Integer, db.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True)
    provider_id = db.Column(db.Integer, db.ForeignKey("providers.id"), nullable=False, index=True)
    model_id = db.Column(db.String(255), nullable=False)
    name = db.Column(db.String(255), nullable=False)
    owned_by = db.Column(db.String(255), nullable=True)
    family = db.Column(db.String(64), nullable=True)
    is_known = db.Column(db.Boolean, nullable=False, default=False)
    context_window = db.Column(db.Integer, nullable=True)
    max_output_tokens = db.Column(db.Integer, nullable=True)
    supports_tools = db.Column(db.Boolean, nullable=False, default=False)
    supports_json_schema = db.Column(db.Boolean, nullable=False, default=False)
    supports_streaming = db.Column(db.Boolean, nullable=False, default=True)
    supports_vision = db.Column(db.Boolean, nullable=False, default=False)
    input_price_per_million = db.Column(db.Numeric(12, 6), nullable=True)
    output_price_per_million = db.Column(db.Numeric(12, 6), nullable=True)

    account = db.relationship("Account", lazy="joined")
    provider = db.relationship("Provider", lazy="joined")


class LlmUsage(db.Model):
    """One model call: who, for what (``caller_type`` + ``caller_id``), which model, tokens, cost
    in USD (NULL when the model is unpriced), latency and outcome. Written once, never updated."""

    __tablename__ = "llm_usages"
    __table_args__ = (
        db.Index("ix_llm_usages_workspace_created", "workspace_id", "created_at"),
        db.Index("ix_llm_usages_caller", "caller_type", "caller_id"),
    )
    id = db.Column(db.Integer, primary_key=True)
    uuid = db.Column(db.String(36), nullable=False, unique=True, default=new_uuid)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id"), nullable=True, index=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    account_id = db.Column(db.Integer, db.ForeignKey("accounts.id"), nullable=True, index=True)
    provider_slug = db.Column(db.String(64), nullable=True)
    model = db.Column(db.String(255), nullable=False)
    caller_type = db.Column(db.String(32), nullable=False)
    caller_id = db.Column(db.String(64), nullable=True)
    node_id = db.Column(db.String(255), nullable=True)
    input_tokens = db.Column(db.Integer, nullable=True)
    output_tokens = db.Column(db.Integer, nullable=True)
    total_tokens = db.Column(db.Integer, nullable=True)
    cost = db.Column(db.Numeric(18, 8), nullable=True)
    latency_ms = db.Column(db.Integer, nullable=True)
    status = db.Column(db.String(16), nullable=False)
    error = db.Column(db.Text, nullable=True)
    attempts = db.Column(db.Integer, nullable=False, default=1)
    stream = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
