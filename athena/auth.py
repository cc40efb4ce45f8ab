"""Token authentication.

Session tokens arrive as ``Authorization: Bearer <token>``; long-lived app tokens in the
documented ``X-Multiplai-Authorization`` header (a Bearer prefix there is accepted too).
Tokens are 32 random bytes; only their SHA-256 is stored.

Precedence: an empty header counts as absent; a valid token in either header authenticates; a
present but invalid one in either header is a 401 even when the other is valid (and so are two
valid tokens of different users). HTTP Basic (``email:password`` or ``email:<app token>``) is
accepted by ``GET /api/v1/user`` only: an argon2 verification per request everywhere else would
be a denial-of-service lever."""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from flask_smorest import abort
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import joinedload

from athena.extensions import db
from athena.models import ApiToken, User
from athena.services.credential_limits import begin_attempt
from athena.timeutil import utcnow

_hasher = PasswordHasher()
APP_HEADER = "X-Multiplai-Authorization"
INVALID_CREDENTIALS = "These credentials do not match our records."
UNAUTHENTICATED = "Unauthenticated."

SECURITY = [{"bearerAuth": []}, {"appToken": []}]
SECURITY_WITH_BASIC = [*SECURITY, {"basicAuth": []}]
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer"},
    "appToken": {"type": "apiKey", "in": "header", "name": APP_HEADER},
    "basicAuth": {"type": "http", "scheme": "basic",
                  "description": "email:password or email:app-token; GET /api/v1/user only."},
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
    if value.lower() == "bearer":  # a client template whose token is empty
        return None
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


def user_by_email(email: str) -> User | None:
    return db.session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower())).scalar_one_or_none()


def _basic_user(value: str) -> User | None:
    """The user of ``Basic base64(email:secret)``: the secret is one of the user's live app
    tokens, or their password. A password check is rate limited like sign-in (429 before argon2,
    athena/services/credential_limits.py); an app token is not a password check (a SHA-256
    lookup of 32 random bytes, nothing to guess), so it still works while the account is locked."""
    try:
        email, _, secret = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not email or not secret or len(email) > 255 or len(secret) > 512:
        return None
    user = user_by_email(email)
    found = user_for_token(secret)
    if found is not None and user is not None and found[1].kind == "app" and found[0].id == user.id:
        return user
    attempt = begin_attempt(email, request.remote_addr)
    if not verify_password(user, secret):
        return None
    attempt.succeeded()
    return user


def _presented(allow_basic: bool) -> list[tuple[User, ApiToken | None] | None]:
    """One entry per credential the request presents (None: it is not valid)."""
    presented: list[tuple[User, ApiToken | None] | None] = []
    authorization = (request.headers.get("Authorization") or "").strip()
    if authorization[:6].lower() == "basic ":
        user = _basic_user(authorization[6:].strip()) if allow_basic else None
        presented.append((user, None) if user is not None else None)
    elif _bearer(authorization):
        presented.append(user_for_token(_bearer(authorization)))
    app_token = _bearer(request.headers.get(APP_HEADER))
    if app_token:
        presented.append(user_for_token(app_token))
    return presented


def authenticate(*, allow_basic: bool = False) -> User:
    presented = _presented(allow_basic)
    if not presented or None in presented or len({user.id for user, _ in presented}) > 1:
        abort(401, message=UNAUTHENTICATED)
    g.user, g.token = presented[0]
    return g.user


def login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        authenticate()
        return view(*args, **kwargs)

    return wrapper


def login_or_basic_required(view):
    """``login_required`` that also takes HTTP Basic credentials (``GET /api/v1/user`` only)."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        authenticate(allow_basic=True)
        return view(*args, **kwargs)

    return wrapper


def current_user() -> User:
    return g.user
