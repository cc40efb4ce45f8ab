"""UTC helpers. The database stores naive UTC; the API speaks ISO-8601 with microseconds and Z."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Naive UTC now, for database columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return to_naive_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
