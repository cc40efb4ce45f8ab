from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from athena.timeutil import iso, to_naive_utc

# Request rules that hold everywhere, spelled so the OpenAPI document can state them too.
#
# guard_input (athena/api/base.py) refuses NUL (U+0000) anywhere in a request: PostgreSQL text and
# JSONB cannot store it. Every request string field carries this pattern, free-form JSON is a
# JsonValue (below). The pattern is ECMA-262 and Python alike.
NO_NUL = r"^[^\x00]*$"
NUL_ERROR = "May not contain NUL characters."
# What Python's str.strip() removes (str.isspace), spelled out: ``\s`` means something else in
# ECMA-262 and in the Rust regex engines validators use, so a pattern saying "not blank" with it
# would not say what the server checks.
SPACE_CLASS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Not blank (something besides whitespace) and no NUL.
NOT_BLANK = rf"^[^\x00]*[^\x00{SPACE_CLASS}][^\x00]*$"


def _has_pattern(field: fields.Field) -> bool:
    return any(isinstance(getattr(v, "regex", None), re.Pattern) for v in field.validators)


class Text(fields.String):
    """A request string: no NUL, documented as ``pattern`` (a field with its own Regexp validator
    must exclude NUL in it: the document shows one pattern per field)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not _has_pattern(self):
            self.validators.insert(0, validate.Regexp(NO_NUL, error=NUL_ERROR))


def not_blank(error: str = "May not be blank.") -> validate.Regexp:
    return validate.Regexp(NOT_BLANK, error=error)


# Free-form JSON (an execution's input, workflow variables, node/edge content): any JSON value
# without NUL in a string. OpenAPI 3.0 cannot constrain object keys (propertyNames is 3.1): the
# description says it. Registered as a component by AthenaApi.init_app (it refers to itself).
JSON_VALUE_REF = "#/components/schemas/JsonValue"
JSON_VALUE_SCHEMA = {
    "description": "Any JSON value; no string in it, object keys included, may contain NUL (U+0000), "
                   "and it may be nested at most 100 levels deep.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean", "nullable": True},  # OpenAPI 3.0 spells null as a nullable type
        {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
        {"type": "object", "additionalProperties": {"$ref": JSON_VALUE_REF}},
    ],
}


class Json(fields.Raw):
    """Free-form JSON in a request (guard_input enforces the NUL and depth rules)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        # anyOf, not allOf: apispec would add an "any object" branch to an allOf for allow_none.
        metadata = {**kwargs.pop("metadata", {}), "anyOf": [{"$ref": JSON_VALUE_REF}]}
        super().__init__(metadata=metadata, **kwargs)


class UtcDateTime(fields.DateTime):
    """ISO-8601 UTC with microseconds and ``Z``; stored naive UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso(value)

    def _deserialize(self, value, attr, data, **kwargs):
        return to_naive_utc(super()._deserialize(value, attr, data, **kwargs))


def _body_is_json() -> bool:
    """Whether the body being loaded is JSON (outside a request, e.g. a schema loaded by code,
    values are taken as JSON too). A form body is text: ``true``/``1`` stand for booleans there."""
    from flask import has_request_context, request

    return not has_request_context() or request.is_json


def _json_type_error(field: fields.Field, value: Any) -> str | None:
    """marshmallow coerces (``1``, ``"yes"`` to True; ``"5"``, ``5.5`` to 5): a JSON body must
    carry the documented JSON type itself."""
    if value is None:
        return None  # allow_none decides
    if isinstance(field, fields.Boolean) and not isinstance(value, bool):
        return field.error_messages["invalid"]
    if isinstance(field, fields.Number) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return field.error_messages["invalid"]
    if isinstance(field, fields.Integer) and isinstance(value, float) and not value.is_integer():
        return field.error_messages["invalid"]
    return None


class StrictSchema(Schema):
    """Request bodies reject unknown fields (no mass assignment), and in a JSON body a boolean is
    ``true``/``false`` and a number is a JSON number (no ``0``/``"yes"`` for booleans, no ``"5"``
    for numbers); a multipart/form body keeps the text spellings (``true``/``false``/``1``/``0``)."""

    class Meta:
        unknown = "raise"
        ordered = True

    @pre_load
    def _strict_json_types(self, data: Any, **_kwargs: Any) -> Any:
        if not isinstance(data, dict) or not _body_is_json():
            return data
        errors: dict[str, list[str]] = {}
        for name, field in self.load_fields.items():
            key = field.data_key or name
            if key in data:
                problem = _json_type_error(field, data[key])
                if problem:
                    errors[key] = [problem]
        if errors:
            raise ValidationError(errors)
        return data


class QuerySchema(Schema):
    """Query strings: unknown parameters are ignored (clients add cache busters and the like), and
    an empty one (``page=``, ``workflow_uuids=``) means "not given", as the documented examples send
    them: the default applies, the filter is off."""

    class Meta:
        unknown = "exclude"
        ordered = True

    @pre_load
    def _empty_means_absent(self, data: Any, **_kwargs: Any) -> dict[str, Any]:
        given: dict[str, Any] = {}
        for key in data:
            value = data[key]  # a list for list fields (webargs' MultiDictProxy)
            if isinstance(value, list):
                value = [item for item in value if item != ""]
                if not value:
                    continue
            elif value == "":
                continue
            given[key] = value
        return given
