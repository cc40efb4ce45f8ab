"""Token authentication.

Session tokens arrive as ``Authorization: Bearer <token>``; long-lived app tokens in the
documented ``X-Multiplai-Authorization`` header (a Bearer prefix there is accepted too).
Tokens are 32 random bytes; only their SHA-256 is stored."""
from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from flask_smorest import abort
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import joinedload

from athena.extensions import db
from athena.models import ApiToken, User
from athena.timeutil import utcnow

_hasher = PasswordHasher()
APP_HEADER = "X-Multiplai-Authorization"
INVALID_CREDENTIALS = "These credentials do not match our records."
UNAUTHENTICATED = "Unauthenticated."

SECURITY = [{"bearerAuth": []}, {"appToken": []}]
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer"},
    "appToken": {"type": "apiKey", "in": "header", "name": APP_HEADER},
}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so both failures cost the same time. Made on
    first use, not at import: an argon2 hash takes 64 MiB for a moment, every process would pay."""
    return _hasher.hash("athena-dummy-password")


def verify_password(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _dummy_hash(), password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, kind: str, name: str = "", ttl_seconds: int | None = None) -> tuple[str, ApiToken]:
    """Create a token row (caller commits). Returns the clear token, shown once."""
    prefix = "aths_" if kind == "session" else "atha_"
    clear = prefix + secrets.token_urlsafe(32)
    now = utcnow()
    if ttl_seconds is None:
        key = "SESSION_TOKEN_TTL_SECONDS" if kind == "session" else "APP_TOKEN_TTL_SECONDS"
        ttl_seconds = current_app.config[key]
    expires_at = now + timedelta(seconds=ttl_seconds) if ttl_seconds else None
    token = ApiToken(user=user, kind=kind, name=name, token_hash=hash_token(clear), expires_at=expires_at, created_at=now)
    db.session.add(token)
    return clear, token


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    return value or None


def token_from_request() -> str | None:
    return _bearer(request.headers.get("Authorization")) or _bearer(request.headers.get(APP_HEADER))


@functools.cache
def _token_statement() -> Select:
    """Built once: every request runs it. The user comes with the token; the user's organization
    only when something asks for it (most requests do not)."""
    return (select(ApiToken).where(ApiToken.token_hash == bindparam("token_hash"))
            .options(joinedload(ApiToken.user).lazyload(User.organization)))


def user_for_token(clear: str | None) -> tuple[User, ApiToken] | None:
    if not clear or len(clear) > 512:
        return None
    token = db.session.execute(_token_statement(), {"token_hash": hash_token(clear)}).scalar_one_or_none()
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= utcnow():
        return None
    return token.user, token


def authenticate() -> User:
    found = user_for_token(token_from_request())
    if found is None:
        abort(401, message=UNAUTHENTICATED)
    g.user, g.token = found
    return g.user


def login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        authenticate()
        return view(*args, **kwargs)

    return wrapper


def current_user() -> User:
    return g.user
