"""UTC time helpers: the engine stores timestamps as ISO-8601 strings with 'Z'."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    """Format ``dt`` as e.g. ``2026-02-10T14:30:00.123456Z`` (naive = UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.isoformat(timespec="microseconds") + "Z"


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 string (a trailing 'Z' is accepted) into aware UTC."""
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)
