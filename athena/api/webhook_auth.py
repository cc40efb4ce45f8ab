"""Webhook callers: a user token, or an HMAC signature made with the workflow's webhook secret.

Signed requests carry ``X-Athena-Timestamp: <unix seconds>`` and
``X-Athena-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>``; the
timestamp must be within ``WEBHOOK_SIGNATURE_TOLERANCE_SECONDS`` (5 min) of now, either way.
A signed request acts as the workflow's owner. A token, when present, always takes the
token path (so members can still trigger by hand; an invalid token is a 401 even if signed).

Each signature is accepted once: the first call admitted with it (after the inactive check and
the webhook rate limit) claims it in Redis (``SET athena:webhook:signature:<hex> NX PX ...``)
until its timestamp is no longer fresh; the same signature again, whatever the query string or
workflow, is a 409 (a client retrying must re-sign with a new timestamp).

Secrets are stored encrypted (:mod:`athena.services.secrets`): HMAC needs the secret itself, so
it cannot be hashed. A stored secret that no configured key decrypts (SECRET_KEY changed without
the old key in SECRET_KEY_FALLBACKS) answers 503 with a message saying so: the server, not the
sender, must be fixed, and senders retry 5xx (a 401 would drop their calls for good; the
API's 500s carry no message)."""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, g, request
from flask_smorest import abort
from redis import RedisError
from sqlalchemy import select

from athena.auth import UNAUTHENTICATED, authenticate, token_from_request
from athena.crypto import UndecryptableSecret
from athena.extensions import db
from athena.models import User, Workflow, Workspace
from athena.redis_client import RedisNotConfigured, get_redis
from athena.services.secrets import decrypt_secret

TIMESTAMP_HEADER = "X-Athena-Timestamp"
SIGNATURE_HEADER = "X-Athena-Signature"
BAD_SIGNATURE = "Invalid webhook signature."
STALE = "The webhook timestamp is missing, malformed, or more than the allowed tolerance from now."
REPLAYED = ("This signed webhook request was already accepted: each signature is accepted once "
            "(a replay). Sign the request again with a new X-Athena-Timestamp.")
REPLAY_UNCHECKED = "Cannot check this signed webhook request against replays right now; retry shortly."
SEEN_PREFIX = "athena:webhook:signature"
# A claimed signature is kept this long after its timestamp stops being fresh: web nodes' clocks
# may differ a little, and one that runs behind would accept the timestamp a little longer.
CLOCK_SKEW_SECONDS = 60
_DUMMY_SECRET = b"athena-no-such-webhook-secret"
log = logging.getLogger(__name__)


UNDECRYPTABLE = ("This workflow's webhook secret cannot be decrypted with the server's SECRET_KEY "
                 "or SECRET_KEY_FALLBACKS, so signatures cannot be checked. The server's operator must "
                 "add the key it was stored under to SECRET_KEY_FALLBACKS, or an editor must set the "
                 "webhook_secret again.")


def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Athena-Signature`` value for a request (``sha256=<hex>``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _fresh(timestamp: str | None, now: float) -> bool:
    if not timestamp or not timestamp.strip().isdigit() or len(timestamp.strip()) > 12:
        return False
    tolerance = float(current_app.config["WEBHOOK_SIGNATURE_TOLERANCE_SECONDS"])
    return abs(now - int(timestamp.strip())) <= tolerance


def _signed_workflow(uuid: str) -> Workflow | None:
    return db.session.execute(
        select(Workflow).join(Workspace, Workspace.id == Workflow.workspace_id).where(
            Workflow.uuid == uuid, Workflow.deleted_at.is_(None), Workspace.deleted_at.is_(None),
        )
    ).scalar_one_or_none()


def verify_signed_request(uuid: str, *, now: float | None = None) -> tuple[Workflow, User]:
    """The workflow and its owner for a correctly signed request; 401 otherwise (the same answer
    for an unknown workflow, one without a secret and a wrong signature)."""
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signature = (request.headers.get(SIGNATURE_HEADER) or "").strip()
    if not timestamp and not signature:
        abort(401, message=UNAUTHENTICATED)
    if not _fresh(timestamp, time.time() if now is None else now):
        abort(401, message=STALE)
    body = request.get_data(cache=True)
    workflow = _signed_workflow(uuid)
    try:
        secret = decrypt_secret(workflow.webhook_secret,
                                f"the webhook secret of workflow {workflow.uuid}") if workflow is not None else None
    except UndecryptableSecret as exc:
        log.error("signed webhook: %s", exc)
        abort(503, message=UNDECRYPTABLE)
    expected = signature_for(secret or _DUMMY_SECRET.decode(), timestamp.strip(), body)
    matches = hmac.compare_digest(expected.encode(), signature.lower().encode())
    if workflow is None or secret is None or not matches:
        abort(401, message=BAD_SIGNATURE)
    owner = db.session.get(User, workflow.user_id)
    if owner is None:
        abort(401, message=BAD_SIGNATURE)
    g.webhook_signature = (expected[len("sha256="):], int(timestamp.strip()))  # claimed once admitted
    return workflow, owner


def seen_key(signature_hex: str) -> str:
    return f"{SEEN_PREFIX}:{signature_hex}"


def claim_signature() -> None:
    """For a verified signed call (nothing otherwise): remember its signature until its timestamp
    is stale; 409 when it was already claimed (a replay).

    Fails closed: if Redis cannot be reached the call is refused with 503 rather than accepted
    unchecked. A replay let through is an execution run twice on an attacker's say-so; a 503 only
    asks the sender to retry, and webhook senders retry on 5xx. (The webhook rate limit fails
    open instead: there the worst case is extra load, not a duplicated action.)"""
    pending = g.get("webhook_signature")
    if pending is None:
        return
    signature_hex, timestamp = pending
    tolerance = float(current_app.config["WEBHOOK_SIGNATURE_TOLERANCE_SECONDS"])
    fresh_until = timestamp + tolerance + CLOCK_SKEW_SECONDS
    ttl_ms = max(1000, int((fresh_until - time.time()) * 1000))
    try:
        claimed = get_redis().set(seen_key(signature_hex), "1", nx=True, px=ttl_ms)
    except (RedisError, RedisNotConfigured):
        log.warning("signed webhook: Redis unavailable, refusing the call (replays cannot be checked)",
                    exc_info=True)
        abort(503, message=REPLAY_UNCHECKED)
    if not claimed:
        abort(409, message=REPLAYED)
    g.webhook_signature = None


def webhook_caller(view: Callable[..., Any]) -> Callable[..., Any]:
    """MethodView decorator: a token caller (``g.user``) or a signed one (``g.user`` = owner and
    ``g.signed_workflow``). Runs before argument parsing, like ``login_required``."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.signed_workflow = g.webhook_signature = None
        if token_from_request():
            authenticate()
        else:
            g.signed_workflow, g.user = verify_signed_request(kwargs["uuid"])
        return view(*args, **kwargs)

    return wrapper
