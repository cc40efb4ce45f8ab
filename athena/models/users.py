from __future__ import annotations

from sqlalchemy.orm import validates

from athena.extensions import db
from athena.models.base import IdMixin, TimestampMixin, new_uuid


class Organization(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "organizations"
    multiplai_id = db.Column(db.String(64), nullable=False, unique=True, default=new_uuid)
    name = db.Column(db.String(255), nullable=False)


class User(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "users"
    multiplai_id = db.Column(db.String(64), nullable=False, unique=True, default=new_uuid)
    name = db.Column(db.String(255), nullable=False, default="")
    email = db.Column(db.String(255), nullable=False, unique=True)
    password_hash = db.Column(db.String(255), nullable=False)
    organization_id = db.Column(db.Integer, db.ForeignKey("organizations.id"), nullable=True, index=True)
    is_admin = db.Column(db.Boolean, nullable=False, default=False)

    organization = db.relationship(Organization, lazy="joined")

    @validates("email")
    def _normalize_email(self, _key: str, value: str) -> str:
        return value.strip().lower()


class ApiToken(db.Model):
    """A session (``Authorization: Bearer``) or app (``X-Multiplai-Authorization``) token.

    Only the SHA-256 of the token is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = db.Column(db.String(16), nullable=False)  # session | app
    name = db.Column(db.String(255), nullable=False, default="")
    token_hash = db.Column(db.String(64), nullable=False, unique=True)
    expires_at = db.Column(db.DateTime, nullable=True)
    revoked_at = db.Column(db.DateTime, nullable=True)
    last_used_at = db.Column(db.DateTime, nullable=True)
    created_at = db.Column(db.DateTime, nullable=False)

    user = db.relationship(User, lazy="joined")
