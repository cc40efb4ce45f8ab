"""Webhook callers: a user token, or an HMAC signature made with the workflow's webhook secret.

Signed requests carry ``X-Athena-Timestamp: <unix seconds>`` and
``X-Athena-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>``; the
timestamp must be within ``WEBHOOK_SIGNATURE_TOLERANCE_SECONDS`` (5 min) of now, either way.
A signed request acts as the workflow's owner. A token, when present, always takes the
token path (so members can still trigger by hand; an invalid token is a 401 even if signed).

Secrets are stored encrypted (:mod:`athena.crypto`): HMAC needs the secret itself, so it
cannot be hashed."""
from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, g, request
from flask_smorest import abort
from sqlalchemy import select

from athena.crypto import decrypt, encrypt
from athena.auth import UNAUTHENTICATED, authenticate, token_from_request
from athena.extensions import db
from athena.models import User, Workflow, Workspace

TIMESTAMP_HEADER = "X-Athena-Timestamp"
SIGNATURE_HEADER = "X-Athena-Signature"
BAD_SIGNATURE = "Invalid webhook signature."
STALE = "The webhook timestamp is missing, malformed, or more than the allowed tolerance from now."
_DUMMY_SECRET = b"athena-no-such-webhook-secret"


# The column stores the secret encrypted (athena/crypto.py): HMAC needs the secret itself.
encrypt_secret = encrypt
decrypt_secret = decrypt


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
    secret = decrypt_secret(workflow.webhook_secret) if workflow is not None else None
    expected = signature_for(secret or _DUMMY_SECRET.decode(), timestamp.strip(), body)
    matches = hmac.compare_digest(expected.encode(), signature.lower().encode())
    if workflow is None or secret is None or not matches:
        abort(401, message=BAD_SIGNATURE)
    owner = db.session.get(User, workflow.user_id)
    if owner is None:
        abort(401, message=BAD_SIGNATURE)
    return workflow, owner


def webhook_caller(view: Callable[..., Any]) -> Callable[..., Any]:
    """MethodView decorator: a token caller (``g.user``) or a signed one (``g.user`` = owner and
    ``g.signed_workflow``). Runs before argument parsing, like ``login_required``."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.signed_workflow = None
        if token_from_request():
            authenticate()
        else:
            g.signed_workflow, g.user = verify_signed_request(kwargs["uuid"])
        return view(*args, **kwargs)

    return wrapper
