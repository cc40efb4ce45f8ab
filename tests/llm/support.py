"""Helpers of the LLM tests: built-in providers, accounts on the fake OpenAI-compatible server."""
from __future__ import annotations

from typing import Any

from athena.extensions import db
from athena.models import LlmUsage, Provider

GOOD_KEY = "sk-athena-test-key-a1b2"  # 23 characters: shown as "sk-…a1b2"


def provider_uuid(slug: str) -> str:
    return db.session.execute(db.select(Provider.uuid).where(Provider.slug == slug,
                                                             Provider.is_builtin.is_(True))).scalar_one()


def account_body(workspace_uuid: str, base_url: str, *, key: str = GOOD_KEY, slug: str = "openai",
                 name: str = "Main", **extra: Any) -> dict[str, Any]:
    return {"workspace_uuid": workspace_uuid, "provider_uuid": provider_uuid(slug), "name": name,
            "credentials": {"api_key": key, "base_url": base_url}, **extra}


def create_account(client, headers: dict[str, str], workspace_uuid: str, base_url: str, **kwargs: Any) -> dict:
    response = client.post("/api/v1/accounts", json=account_body(workspace_uuid, base_url, **kwargs), headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json["data"]


def usage_rows(**filters: Any) -> list[LlmUsage]:
    db.session.expire_all()
    query = db.select(LlmUsage).order_by(LlmUsage.id)
    for key, value in filters.items():
        query = query.where(getattr(LlmUsage, key) == value)
    return list(db.session.execute(query).scalars())
