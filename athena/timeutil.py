"""Time, in one place. Everything is UTC; the API, the events and the engine's run entries speak
ISO-8601 with microseconds and ``Z`` (:func:`iso`).

- :func:`utcnow`: naive UTC, what the database columns store;
- :func:`aware_utcnow`: aware UTC, what the engine computes with (deadlines, waits);
- :func:`iso_now`: now as that text, without building a datetime (every event has one).

Stdlib only: the engine imports it too."""
from __future__ import annotations

import time
from datetime import datetime, timezone


def utcnow() -> datetime:
    """Naive UTC now, for database columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def aware_utcnow() -> datetime:
    """Aware UTC now (the engine's clock)."""
    return datetime.now(timezone.utc)


def to_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def iso(value: datetime | None) -> str | None:
    """``2026-02-10T14:30:00.123456Z`` (a naive value is UTC); None stays None."""
    if value is None:
        return None
    return to_naive_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_now() -> str:
    """:func:`iso` of now, the fast way."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1_000_000):06d}Z"


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 string (a trailing 'Z' is accepted) into aware UTC."""
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
