"""Project-wide API behaviour: the Api subclass and the app's instance of it (``api``), the
``{"data": ...}`` envelope and the ``{"message", "errors"}`` error shape, of HTTP errors and of
the domain errors services raise (athena/errors.py) alike (pagination: athena/api/pagination.py)."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Callable

from flask_smorest import Api, abort
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from athena.api.input_guard import guard_input, sends_a_body
from athena.api.openapi import AthenaSpecPlugin
from athena.errors import DomainError
from athena.schemas.common import JSON_VALUE_REF, JSON_VALUE_SCHEMA

_envelopes: dict[tuple[str, str], type[Schema]] = {}


class ErrorSchema(Schema):
    message = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={
        "additionalProperties": {"$ref": JSON_VALUE_REF},
        "description": "Problems by field (a list of messages, or nested by item for lists and objects)."})


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


BODY_REQUIRED = "The request body is required."


def _requiring_body(view_method: Callable) -> Callable:
    """The view method, answering 422 first when the request has no body at all: after the
    authentication of the view's decorators, before its arguments are parsed (webargs would load
    an absent JSON body as ``{}``, so an update without a body would change nothing and answer 200)."""

    @functools.wraps(view_method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not sends_a_body():
            abort(422, message=BODY_REQUIRED, errors={"json": [BODY_REQUIRED]})
        return view_method(*args, **kwargs)

    wrapper.athena_requires_body = True  # type: ignore[attr-defined]
    return wrapper


class AthenaApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *, spec_kwargs=None):  # type: ignore[override]
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [*spec_kwargs.get("extra_plugins", ()), AthenaSpecPlugin()]
        super().init_app(app, spec_kwargs=spec_kwargs)
        # Free-form JSON fields refer to it (athena.schemas.common.Json); recursive, so not a marshmallow schema.
        self.spec.components.schema("JsonValue", component=JSON_VALUE_SCHEMA)
        app.before_request(guard_input)

    def register_blueprint(self, blp, *, parameters=None, **options):  # type: ignore[override]
        """Also: an operation whose document says its request body is required refuses a request
        without one (422), whatever the view (see _requiring_body)."""
        super().register_blueprint(blp, parameters=parameters, **options)
        paths = self.spec.to_dict()["paths"]
        name = options.get("name", blp.name)
        for rule in self._app.url_map.iter_rules():
            view_class = getattr(self._app.view_functions.get(rule.endpoint), "view_class", None)
            if not rule.endpoint.startswith(f"{name}.") or view_class is None:
                continue
            documented = paths.get(self.flask_plugin.flaskpath2openapi(rule.rule), {})
            for method in rule.methods or ():
                view_method = getattr(view_class, method.lower(), None)
                body = documented.get(method.lower(), {}).get("requestBody", {})
                if view_method is not None and body.get("required") and not getattr(
                        view_method, "athena_requires_body", False):
                    setattr(view_class, method.lower(), _requiring_body(view_method))

    def _register_error_handlers(self) -> None:
        super()._register_error_handlers()
        self._app.register_error_handler(DomainError, self.handle_domain_error)

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        data = getattr(error, "data", None) or {}
        errors = data.get("errors", data.get("messages"))
        headers = dict(data.get("headers") or {})
        if hasattr(error, "get_headers"):
            for key, value in error.get_headers():
                if key.lower() not in ("content-type", "content-length"):
                    headers.setdefault(key, value)
        if error.code == 500:
            return {"message": "Internal server error"}, 500, headers
        payload, status, headers = error_answer(
            error.code, data.get("message") or error.description or error.name, errors, headers)
        if errors is not None and error.code == 422 and "message" not in data:
            payload["message"] = _first_message(payload["errors"]) or "The given data was invalid."
        return payload, status, headers

    def handle_domain_error(self, error: DomainError):
        """What a service raised (athena/errors.py): answered like an HTTP error of its status."""
        return error_answer(error.status, error.message, error.errors, error.headers)


def error_answer(status: int, message: str, errors: Any = None,
                 headers: Mapping[str, str] | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Every error answer of the API: ``{"message", "errors"?}`` (errors by field), status, headers."""
    payload: dict[str, Any] = {"message": message}
    if errors is not None:
        payload["errors"] = _flatten_errors(errors)
    return payload, status, dict(headers or {})


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


# The API of the app, bound in ``create_app`` (``api.init_app``).
api = AthenaApi()
