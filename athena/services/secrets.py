"""Stored secrets under the key ring (athena/crypto.py): a workflow's webhook secret, its
secret variables and the secret credentials of LLM accounts (athena/services/llm_accounts.py); the
workflow ones (``{"value": ..., "secret": true}``), stored encrypted, masked for the API,
decrypted for runs; and re-encrypting them all under the current ``SECRET_KEY``
(``flask --app wsgi secrets rotate``)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from athena.crypto import UndecryptableSecret, decrypt, encrypt, is_encrypted, rotate
from athena.errors import Invalid
from athena.extensions import db
from athena.models import Account, Workflow

ROTATE_BATCH = 200
SECRET_MASK = "********"


# The column stores the secret encrypted: HMAC needs the secret itself, so it cannot be hashed.
def encrypt_secret(secret: str | None) -> str | None:
    return encrypt(secret) if secret else None


def decrypt_secret(stored: str | None, what: str = "a webhook secret") -> str | None:
    """The clear secret, None when there is none; raises UndecryptableSecret."""
    return decrypt(stored, what) if stored else None


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("secret"))


def public_variables(variables: dict | None) -> dict:
    """Variables as the API shows them: secrets (``{"value": ..., "secret": true}``) masked."""
    return {name: {"secret": True, "value": SECRET_MASK} if is_secret(value) else value
            for name, value in (variables or {}).items()}


def runtime_variables(variables: dict | None) -> dict:
    """Variables as expressions see them: secrets decrypted to their value. Raises
    :class:`athena.crypto.UndecryptableSecret` (naming the variable) when a secret cannot be
    decrypted with the configured keys: the run fails with that message, never sees a None."""
    return {name: decrypt(value.get("value") or "", f"workflow variable {name!r}") if is_secret(value) else value
            for name, value in (variables or {}).items()}


def store_variables(old: dict | None, new: dict) -> dict:
    """Secrets are stored encrypted; a masked secret sent back unchanged keeps its stored value."""
    stored: dict[str, Any] = {}
    for name, value in new.items():
        if is_secret(value):
            clear = value.get("value")
            if clear == SECRET_MASK:
                previous = (old or {}).get(name)
                if not is_secret(previous):
                    message = f"variables.{name}: send the secret's value (the mask only keeps an existing secret)"
                    raise Invalid(message, errors={f"variables.{name}": [message]})
                value = previous
            elif not isinstance(clear, str) or not clear:
                message = f"variables.{name}: a secret's value must be a non-empty string"
                raise Invalid(message, errors={f"variables.{name}": [message]})
            else:
                value = {"secret": True, "value": encrypt(clear)}
        stored[name] = value
    return stored


def rotate_stored_secrets(*, dry_run: bool = False) -> tuple[dict[str, int], list[str]]:
    """Re-encrypt every webhook secret, secret workflow variable and account credential under ``SECRET_KEY``.

    Returns ``({"rotated": n, "current": m}, [what could not be decrypted])``; values no key
    opens are left as they are, the others are still re-encrypted (committed per batch of
    ``ROTATE_BATCH`` workflows, rolled back with ``dry_run``). Idempotent."""
    counts = {"rotated": 0, "current": 0}
    unreadable: list[str] = []

    def rotated(stored: str, what: str) -> str:
        try:
            new = rotate(stored, what)
        except UndecryptableSecret:
            unreadable.append(what)
            return stored
        counts["rotated" if new != stored else "current"] += 1
        return new

    ids = db.session.execute(select(Workflow.id).order_by(Workflow.id)).scalars().all()
    for start in range(0, len(ids), ROTATE_BATCH):
        # Locked (PostgreSQL) so that an edit made meanwhile is not overwritten.
        chunk = db.session.execute(select(Workflow).where(Workflow.id.in_(ids[start:start + ROTATE_BATCH]))
                                   .order_by(Workflow.id).with_for_update(of=Workflow)).scalars().all()
        for workflow in chunk:
            label = f"workflow {workflow.uuid} ({workflow.name!r})"
            if workflow.webhook_secret:
                workflow.webhook_secret = rotated(workflow.webhook_secret, f"{label}: webhook_secret")
            variables = dict(workflow.variables or {})
            changed = False
            for name, value in variables.items():
                if isinstance(value, dict) and value.get("secret") and value.get("value"):
                    new = rotated(value["value"], f"{label}: variables.{name}")
                    if new != value["value"]:
                        variables[name], changed = {**value, "value": new}, True
            if changed:
                workflow.variables = variables  # a new dict: the JSON column sees the change
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()
    ids = db.session.execute(select(Account.id).order_by(Account.id)).scalars().all()
    for start in range(0, len(ids), ROTATE_BATCH):
        chunk = db.session.execute(select(Account).where(Account.id.in_(ids[start:start + ROTATE_BATCH]))
                                   .order_by(Account.id).with_for_update(of=Account)).scalars().all()
        for account in chunk:
            label = f"account {account.uuid} ({account.name!r})"
            credentials, changed = dict(account.credentials or {}), False
            for key, value in credentials.items():
                if isinstance(value, str) and is_encrypted(value):
                    new = rotated(value, f"{label}: credentials.{key}")
                    changed, credentials[key] = changed or new != value, new
                elif isinstance(value, dict):
                    inner = {name: rotated(item, f"{label}: credentials.{key}.{name}")
                             if isinstance(item, str) and is_encrypted(item) else item for name, item in value.items()}
                    changed, credentials[key] = changed or inner != value, inner
            if changed:
                account.credentials = credentials  # a new dict: the JSON column sees the change
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()
    return counts, unreadable
