"""What Athena ships about LLM services: the built-in providers (athena/data/providers.json,
seeded by a migration, read-only) and the table of known models (athena/data/known_models.json:
context window, max output, capabilities, USD per million tokens). Nothing is fetched at run time."""
from __future__ import annotations

import functools
import json
import re
from decimal import Decimal
from importlib import resources
from typing import Any

from sqlalchemy import Connection, Table, select

# The credential fields the client layer knows (athena/services/llm_client.py): an
# authentication_config may require them and mark them secret, it cannot invent others.
CREDENTIAL_FIELDS = ("api_key", "base_url", "organization", "extra_headers")
CREDENTIAL_TYPES = {"api_key": "string", "base_url": "url", "organization": "string", "extra_headers": "object"}


def _load(name: str) -> dict[str, Any]:
    return json.loads(resources.files("athena").joinpath("data", name).read_text("utf-8"))


@functools.cache
def builtin_providers() -> tuple[dict[str, Any], ...]:
    return tuple(_load("providers.json")["providers"])


@functools.cache
def known_models() -> tuple[dict[str, Any], ...]:
    return tuple(_load("known_models.json")["models"])


def normalise_model_id(model_id: str) -> str:
    """``meta-llama/Meta-Llama-3.1-8B-Instruct`` -> ``llama-3.1-8b-instruct``; ``llama3.1:8b`` ->
    ``llama3.1-8b``."""
    name = model_id.strip().lower().rsplit("/", 1)[-1]
    name = re.sub(r"[:_\s]+", "-", name)
    return name.removeprefix("meta-")


@functools.cache
def _index() -> tuple[dict[str, dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    exact: dict[str, dict[str, Any]] = {}
    prefixes: list[tuple[str, dict[str, Any]]] = []
    for entry in known_models():
        for name in (entry["id"], *entry.get("aliases", ())):
            exact.setdefault(normalise_model_id(name), entry)
            if entry.get("match_prefix"):
                prefixes.append((normalise_model_id(name), entry))
    prefixes.sort(key=lambda item: len(item[0]), reverse=True)
    return exact, prefixes


def known_model(model_id: str) -> dict[str, Any] | None:
    """The shipped entry for a provider's model id, or None: exact (normalised) first, then the
    longest prefix of an open-weight family."""
    name = normalise_model_id(model_id)
    exact, prefixes = _index()
    if name in exact:
        return exact[name]
    return next((entry for prefix, entry in prefixes if name.startswith(prefix)), None)


def price_of(model_id: str) -> tuple[Decimal | None, Decimal | None]:
    entry = known_model(model_id) or {}
    return _decimal(entry.get("input_price_per_million")), _decimal(entry.get("output_price_per_million"))


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def upsert_builtin_providers(connection: Connection, table: Table, now: Any) -> None:
    """Insert the built-in providers that are missing, refresh the others (by uuid). Idempotent:
    the migration calls it, and so can a later one when the shipped list changes."""
    existing = set(connection.execute(select(table.c.uuid).where(table.c.is_builtin.is_(True))).scalars())
    for row in builtin_providers():
        values = {"slug": row["slug"], "name": row["name"], "description": row["description"],
                  "base_url": row["base_url"], "authentication_config": row["authentication_config"],
                  "updated_at": now}
        if row["uuid"] in existing:
            connection.execute(table.update().where(table.c.uuid == row["uuid"]).values(**values))
        else:
            connection.execute(table.insert().values(uuid=row["uuid"], is_builtin=True, workspace_id=None,
                                                     user_id=None, created_at=now, deleted_at=None, **values))
