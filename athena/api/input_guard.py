"""Before every request (``guard_input``): input the database cannot store never reaches it, and
an API body of another type than the operation takes is a 415."""
from __future__ import annotations

import json
import math
from typing import Any

from flask import current_app, request
from flask_smorest import abort

from athena.api.paths import API

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


JSON_ONLY = "This operation takes a JSON body: send it with Content-Type: application/json."


def sends_a_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _other_body_types() -> tuple[str, ...] | None:
    """The body types an API view takes besides JSON: its class's ``other_body_types`` (None: any
    type, the webhook); ``()`` for every other view."""
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(getattr(view, "view_class", None), "other_body_types", ())


def guard_input() -> None:
    """Before every request: input the database cannot store must not reach it.

    A JSON body is parsed strictly (no NaN/Infinity, no numbers that overflow a float or
    Python's integer parsing limit) and nothing in the URL, query, form or body may hold NUL.
    An API body of another type than the operation takes is a 415 (a ``curl -d`` without
    ``Content-Type: application/json`` would otherwise be read as no body at all)."""
    if "\x00" in request.path or _input_problem(request.args.to_dict(flat=False)):
        abort(422, message=NUL_MESSAGE, errors={"query": [NUL_MESSAGE]})
    if not request.is_json and request.path.startswith(f"{API}/") and sends_a_body():
        others = _other_body_types()
        if others is not None and request.mimetype not in others:
            message = JSON_ONLY if not others else (
                f"This operation takes a body of type application/json or {' or '.join(others)}.")
            abort(415, message=message, errors={"json": [message]})
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
    elif sends_a_body() and b"\x00" in request.get_data(cache=True):  # a text body the webhook stores
        abort(422, message=NUL_MESSAGE, errors={"body": [NUL_MESSAGE]})
