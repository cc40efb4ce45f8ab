"""Minimal marshmallow -> JSON Schema conversion for the node catalog."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, missing, validate

_SIMPLE: tuple[tuple[type[fields.Field], str], ...] = (
    (fields.Boolean, "boolean"),
    (fields.Integer, "integer"),
    (fields.Float, "number"),
    (fields.Number, "number"),
    (fields.String, "string"),
)


def field_to_json(field: fields.Field) -> dict[str, Any]:
    """JSON Schema for one marshmallow field (unknown field kinds -> any)."""
    out: dict[str, Any] = {}
    if isinstance(field, fields.Nested):
        nested = field.schema
        out = schema_to_json(nested)
        if getattr(field, "many", False):
            out = {"type": "array", "items": out}
    elif isinstance(field, fields.List):
        out = {"type": "array", "items": field_to_json(field.inner)}
    elif isinstance(field, fields.Dict):
        out = {"type": "object"}
        if field.value_field is not None:
            out["additionalProperties"] = field_to_json(field.value_field)
    else:
        for kind, name in _SIMPLE:
            if isinstance(field, kind):
                out = {"type": name}
                break
    for validator in field.validators:
        if isinstance(validator, validate.OneOf):
            out["enum"] = list(validator.choices)
        elif isinstance(validator, validate.Range):
            if validator.min is not None:
                out["minimum"] = validator.min
            if validator.max is not None:
                out["maximum"] = validator.max
        elif isinstance(validator, validate.Length):
            prefix = "Length" if out.get("type") == "string" else "Items"
            if validator.min is not None:
                out[f"min{prefix}"] = validator.min
            if validator.max is not None:
                out[f"max{prefix}"] = validator.max
    default = field.load_default
    if default is not missing and not callable(default):
        out["default"] = default
    description = field.metadata.get("description")
    if description:
        out["description"] = description
    return out


def schema_to_json(schema: Schema | type[Schema]) -> dict[str, Any]:
    """JSON Schema object for a marshmallow schema (instance or class)."""
    if isinstance(schema, type):
        schema = schema()
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, field in schema.fields.items():
        if field.dump_only:
            continue
        key = field.data_key or name
        properties[key] = field_to_json(field)
        if field.required:
            required.append(key)
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    return out
