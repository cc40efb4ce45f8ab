"""Project-wide API behaviour in one place: the Api subclass, the ``{"data": ...}`` envelope,
Laravel-style ``meta``/``links`` pagination and the ``{"message", "errors"}`` error shape."""
from __future__ import annotations

import json
import math
from typing import Any

from flask import request
from flask_smorest import Api, abort
from marshmallow import Schema, fields, validate
from werkzeug.exceptions import HTTPException

from athena.schemas.common import JSON_VALUE_SCHEMA

_envelopes: dict[tuple[str, str], type[Schema]] = {}


class ErrorSchema(Schema):
    message = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.Raw())


def _flatten_errors(errors: Any) -> dict[str, Any]:
    """webargs nests errors by location ({"json": {"name": [...]}}); clients want fields."""
    if not isinstance(errors, dict):
        return {"_schema": errors if isinstance(errors, list) else [str(errors)]}
    flat: dict[str, Any] = {}
    for key, value in errors.items():
        if key in ("json", "query", "form", "files", "headers", "path", "json_or_form") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def _first_message(errors: dict[str, Any]) -> str | None:
    for field, value in errors.items():
        while isinstance(value, dict) and value:
            field, value = next(iter(value.items()))
        if isinstance(value, list) and value:
            value = value[0]
            while isinstance(value, (dict, list)) and value:
                value = next(iter(value.values())) if isinstance(value, dict) else value[0]
        if isinstance(value, str):
            return value if field == "_schema" else f"{field}: {value}"
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


MAX_JSON_DEPTH = 100
NUL_MESSAGE = "The request may not contain NUL characters."


def _input_problem(value: Any) -> str | None:
    """What the database could not store: NUL (PostgreSQL text and JSONB reject it) or nesting
    deep enough to blow the stack of the code that walks it. Iterative, so depth can't hurt here."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"The request may not be nested more than {MAX_JSON_DEPTH} levels deep."
        if isinstance(item, str):
            if "\x00" in item:
                return NUL_MESSAGE
        elif isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return None


def guard_input() -> None:
    """Before every request: input the database cannot store must not reach it.

    A JSON body is parsed strictly (no NaN/Infinity, no numbers that overflow a float or
    Python's integer parsing limit) and nothing in the URL, query, form or body may hold NUL."""
    if "\x00" in request.path or _input_problem(request.args.to_dict(flat=False)):
        abort(422, message=NUL_MESSAGE, errors={"query": [NUL_MESSAGE]})
    data = request.get_data(cache=True) if request.is_json else b""
    if data:
        try:
            body = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):
            abort(400, message="The request body is not valid JSON.", errors={"json": ["Invalid JSON body."]})
        problem = _input_problem(body)
        if problem:
            abort(422, message=problem, errors={"json": [problem]})
    elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if _input_problem(request.form.to_dict(flat=False)):
            abort(422, message=NUL_MESSAGE, errors={"form": [NUL_MESSAGE]})


class AthenaApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *, spec_kwargs=None):  # type: ignore[override]
        super().init_app(app, spec_kwargs=spec_kwargs)
        # Free-form JSON fields refer to it (athena.schemas.common.Json); recursive, so not a marshmallow schema.
        self.spec.components.schema("JsonValue", component=JSON_VALUE_SCHEMA)
        app.before_request(guard_input)

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        data = getattr(error, "data", None) or {}
        errors = data.get("errors", data.get("messages"))
        payload: dict[str, Any] = {"message": data.get("message") or error.description or error.name}
        if errors is not None:
            payload["errors"] = _flatten_errors(errors)
            if error.code == 422 and "message" not in data:
                payload["message"] = _first_message(payload["errors"]) or "The given data was invalid."
        if error.code == 500:
            payload = {"message": "Internal server error"}
        headers = data.get("headers") or {}
        if hasattr(error, "get_headers"):
            for key, value in error.get_headers():
                if key.lower() not in ("content-type", "content-length"):
                    headers.setdefault(key, value)
        return payload, error.code, headers


def envelope(schema: type[Schema]) -> type[Schema]:
    """A ``{"data": <schema>}`` response schema (one class per resource, named for OpenAPI)."""
    key = (schema.__name__, "one")
    if key not in _envelopes:
        name = schema.__name__.removesuffix("Schema") + "Response"
        _envelopes[key] = Schema.from_dict({"data": fields.Nested(schema, required=True)}, name=name)
    return _envelopes[key]


def list_envelope(schema: type[Schema]) -> type[Schema]:
    """A ``{"data": [<schema>, ...]}`` response schema for short, unpaginated lists."""
    key = (schema.__name__, "list")
    if key not in _envelopes:
        name = schema.__name__.removesuffix("Schema") + "ListResponse"
        _envelopes[key] = Schema.from_dict({"data": fields.List(fields.Nested(schema), required=True)}, name=name)
    return _envelopes[key]


class PaginationMetaSchema(Schema):
    current_page = fields.Integer(required=True)
    # ``from``/``to`` are Python keywords, hence data_key.
    from_ = fields.Integer(data_key="from", allow_none=True)
    last_page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    to = fields.Integer(allow_none=True)
    total = fields.Integer(required=True)
    path = fields.String(required=True)


class PaginationLinksSchema(Schema):
    first = fields.String(required=True)
    last = fields.String(required=True)
    prev = fields.String(allow_none=True)
    next = fields.String(allow_none=True)


def page_envelope(schema: type[Schema]) -> type[Schema]:
    key = (schema.__name__, "page")
    if key not in _envelopes:
        name = schema.__name__.removesuffix("Schema") + "PageResponse"
        _envelopes[key] = Schema.from_dict(
            {
                "data": fields.List(fields.Nested(schema), required=True),
                "meta": fields.Nested(PaginationMetaSchema, required=True),
                "links": fields.Nested(PaginationLinksSchema, required=True),
            },
            name=name,
        )
    return _envelopes[key]


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


def _page_url(page: int) -> str:
    args = request.args.to_dict(flat=False)
    args["page"] = [str(page)]
    from urllib.parse import urlencode

    return f"{request.base_url}?{urlencode(args, doseq=True)}"


def paginate(query, page: int, per_page: int, *, total: int | None = None, key=None,
             rows=None) -> dict[str, Any]:
    """Run a SQLAlchemy select for one page; returns ``{"data", "meta", "links"}``.

    ``query`` is a flask-sqlalchemy/SQLAlchemy ``Select``; the count runs on the same filters
    (``SELECT count(*) FROM (<query>)``: the databases drop the unused columns, so an index that
    covers the filters answers it alone).

    With ``key`` (the primary key column of the one entity ``query`` selects; no joins that repeat
    rows) and ``rows`` (a select of that entity, with its loader options, and no filters), the page
    is a deferred join: its keys first, from ``query`` with ``LIMIT``/``OFFSET`` (an index range;
    the rows skipped are not read), then ``rows`` by those keys, in the page's order. Deep pages
    then cost index entries, not table rows. ``rows`` carries no filters on purpose: with them,
    a planner without statistics (SQLite) walks the filter's index instead of the 20 keys.
    """
    from sqlalchemy import func, select

    from athena.extensions import db

    if total is None:
        count_query = select(func.count()).select_from(query.order_by(None).subquery())
        total = db.session.execute(count_query).scalar_one()
    start = (page - 1) * per_page
    if key is None:
        items = list(db.session.execute(query.limit(per_page).offset(start)).unique().scalars())
    else:
        keys = list(db.session.execute(query.with_only_columns(key).limit(per_page).offset(start)).scalars())
        position = {value: index for index, value in enumerate(keys)}
        items = sorted(db.session.execute(rows.where(key.in_(keys))).unique().scalars(),
                       key=lambda item: position[getattr(item, key.key)]) if keys else []
    last_page = max(1, math.ceil(total / per_page))
    return {
        "data": items,
        "meta": {
            "current_page": page,
            "from_": start + 1 if items else None,
            "last_page": last_page,
            "per_page": per_page,
            "to": start + len(items) if items else None,
            "total": total,
            "path": request.base_url,
        },
        "links": {
            "first": _page_url(1),
            "last": _page_url(last_page),
            "prev": _page_url(page - 1) if page > 1 else None,
            "next": _page_url(page + 1) if page < last_page else None,
        },
    }
