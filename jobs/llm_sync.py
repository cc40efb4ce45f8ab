"""The RQ job that syncs an account's models from its provider (athena/services/llm_accounts.py).
It takes the account's id only (never a credential), reloads it, and is safe to run twice."""
from __future__ import annotations

from jobs.app_context import worker_app


def sync_account_models(account_id: int) -> str:
    app = worker_app()
    with app.app_context():
        from athena.extensions import db
        from athena.services.llm_accounts import sync_models

        try:
            return sync_models(account_id)
        finally:
            db.session.remove()
