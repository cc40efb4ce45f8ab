"""URL converters: every ``{uuid}`` path parameter matches only a UUID.

So a fixed path beside ``/<uuid>`` (``/workflows/generate``, ``/workflow-executions/count``) never
falls through to the uuid route: another method there is a 405 with its own ``Allow``."""
from __future__ import annotations

from typing import Any

from werkzeug.routing import UUIDConverter


class UuidString(UUIDConverter):
    """A UUID path segment (any case), handed to the view as the lower-case string uuids are
    stored as (werkzeug's own ``uuid`` converter hands over a ``uuid.UUID``)."""

    def to_python(self, value: str) -> str:  # type: ignore[override]
        return value.lower()

    def to_url(self, value: Any) -> str:
        return str(value)


def uuid_parameter_schema(_converter: UuidString) -> dict[str, str]:
    return {"type": "string", "format": "uuid"}
