"""Stored secrets under the key ring (athena/crypto.py): re-encrypting them all under the current
``SECRET_KEY`` (``flask --app wsgi secrets rotate``)."""
from __future__ import annotations

from sqlalchemy import select

from athena.crypto import UndecryptableSecret, rotate
from athena.extensions import db
from athena.models import Workflow

ROTATE_BATCH = 200


def rotate_stored_secrets(*, dry_run: bool = False) -> tuple[dict[str, int], list[str]]:
    """Re-encrypt every webhook secret and secret workflow variable under ``SECRET_KEY``.

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
    return counts, unreadable
