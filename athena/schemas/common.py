from __future__ import annotations

from marshmallow import Schema, fields

from athena.timeutil import iso, to_naive_utc


class UtcDateTime(fields.DateTime):
    """ISO-8601 UTC with microseconds and ``Z``; stored naive UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso(value)

    def _deserialize(self, value, attr, data, **kwargs):
        return to_naive_utc(super()._deserialize(value, attr, data, **kwargs))


class StrictSchema(Schema):
    """Request bodies reject unknown fields (no mass assignment)."""

    class Meta:
        unknown = "raise"
        ordered = True


class QuerySchema(Schema):
    """Query strings: unknown parameters are ignored (clients add cache busters and the like)."""

    class Meta:
        unknown = "exclude"
        ordered = True
