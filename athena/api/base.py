"""Project-wide API behaviour in one place: the Api subclass, the ``{"data": ...}`` envelope,
Laravel-style ``meta``/``links`` pagination and the ``{"message", "errors"}`` error shape."""
from __future__ import annotations

import functools
import json
import math
from typing import Any, Callable

from apispec import BasePlugin
from flask import current_app, request
from flask_smorest import Api, abort
from marshmallow import Schema, fields, validate
from werkzeug.exceptions import HTTPException

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


def _sends_a_body() -> bool:
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
    if not request.is_json and request.path.startswith(f"{API}/") and _sends_a_body():
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
    elif _sends_a_body() and b"\x00" in request.get_data(cache=True):  # a text body the webhook stores
        abort(422, message=NUL_MESSAGE, errors={"body": [NUL_MESSAGE]})


# -- the OpenAPI document: what the views alone do not say --------------------------------------

API = "/api/v1"
WORKSPACE, WORKFLOW, EXECUTION = f"{API}/workspaces/{{uuid}}", f"{API}/workflows/{{uuid}}", \
    f"{API}/workflow-executions/{{uuid}}"
MEMBER = f"{WORKSPACE}/members/{{user_uuid}}"
# What a created (or listed) resource can be used for next: OpenAPI links, so clients and
# schemathesis' stateful tests chain calls on real resources.
WORKSPACE_NEXT = [("get", WORKSPACE), ("put", WORKSPACE), ("delete", WORKSPACE), ("get", f"{WORKSPACE}/members"),
                  ("post", f"{WORKSPACE}/members")]
WORKFLOW_NEXT = [("get", WORKFLOW), ("put", WORKFLOW), ("delete", WORKFLOW), ("post", f"{WORKFLOW}/favorite"),
                 ("delete", f"{WORKFLOW}/favorite"), ("post", f"{WORKFLOW}/webhook")]
EXECUTION_NEXT = [("get", EXECUTION), ("put", EXECUTION), ("patch", EXECUTION), ("delete", EXECUTION),
                  ("post", f"{EXECUTION}/stop"), ("post", f"{EXECUTION}/retry"), ("get", f"{EXECUTION}/approvals")]
CREATED_UUID = "$response.body#/data/uuid"


def _operation_ref(method: str, path: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _link_name(method: str, path: str) -> str:
    words = [part for part in path.removeprefix(API).split("/") if part and not part.startswith("{")]
    return method.capitalize() + "".join(word.title().replace("-", "") for word in words) + (
        "ById" if path.endswith("}") else "")


def _links_to(targets: list[tuple[str, str]], parameters: dict[str, str]) -> dict[str, dict]:
    return {_link_name(method, path): {"operationRef": _operation_ref(method, path),
                                       "parameters": {name: value for name, value in parameters.items()
                                                      if f"{{{name.split('.')[-1]}}}" in path}}
            for method, path in targets}


def _create_link(path: str, body: dict[str, str]) -> dict[str, dict]:
    return {_link_name("post", path): {"operationRef": _operation_ref("post", path), "requestBody": body}}


EXECUTION_LINKS = _links_to(EXECUTION_NEXT, {"path.uuid": CREATED_UUID})
LINKS: dict[tuple[str, str, str], dict[str, dict]] = {
    ("post", f"{API}/workspaces", "201"): {
        **_links_to(WORKSPACE_NEXT, {"path.uuid": CREATED_UUID}),
        **_create_link(f"{API}/workflows", {"workspace_uuid": CREATED_UUID})},
    ("post", f"{WORKSPACE}/members", "201"): _links_to(
        [("put", MEMBER), ("delete", MEMBER)],
        {"path.uuid": "$request.path.uuid", "path.user_uuid": "$response.body#/data/user_uuid"}),
    ("post", f"{API}/workflows", "201"): {
        **_links_to(WORKFLOW_NEXT, {"path.uuid": CREATED_UUID}),
        **_create_link(f"{API}/workflow-executions", {"workflow_uuid": CREATED_UUID})},
    ("post", f"{API}/workflow-executions", "201"): EXECUTION_LINKS,
    ("post", f"{EXECUTION}/retry", "201"): EXECUTION_LINKS,
    ("post", f"{WORKFLOW}/webhook", "200"): EXECUTION_LINKS,
    ("post", f"{WORKFLOW}/webhook", "202"): EXECUTION_LINKS,
    ("get", f"{EXECUTION}/approvals", "200"): _links_to(
        [("post", f"{EXECUTION}/approvals/{{approval_id}}/approve"),
         ("post", f"{EXECUTION}/approvals/{{approval_id}}/reject")],
        {"path.uuid": "$request.path.uuid", "path.approval_id": "$response.body#/data/0/uuid"}),
}

# Rules across query parameters ("at least one of"), stated the way OpenAPI 3.0 can: the
# parameters become the properties of one object parameter (style form, explode: on the wire they
# are the same separate parameters) whose schema is an anyOf of "this one is given". Empty values
# mean "not given" (QuerySchema), so the one given must be non-empty.
AT_LEAST_ONE: dict[tuple[str, str], tuple[str, tuple[str, ...], str]] = {
    ("get", f"{API}/workflow-executions"): (
        "scope", ("workspace_uuid", "organization_multiplai_id", "workflow_uuid", "workflow_uuids", "workflow_uuids[]"),
        "At least one of workspace_uuid, organization_multiplai_id, workflow_uuid or workflow_uuids (also spelled "
        "workflow_uuids[]), non-empty, is required; workspace_uuid wins over organization_multiplai_id."),
    ("get", f"{API}/workflow-executions/count"): (
        "scope", ("workspace_uuid", "multiplai_id"),
        "workspace_uuid or multiplai_id, non-empty, is required; workspace_uuid wins over multiplai_id."),
}


def _given(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a parameter that counts as given: non-empty (for a list, an item that is)."""
    if schema.get("type") == "array":
        return {"type": "array", "minItems": 1, "items": {"minLength": 1}}
    return {"minLength": 1}


def _fold_at_least_one(operation: dict[str, Any], name: str, members: tuple[str, ...], description: str) -> None:
    parameters = operation.get("parameters", [])
    folded = {p["name"]: p for p in parameters if p.get("in") == "query" and p["name"] in members}
    if not folded:
        return
    properties = {key: {**p["schema"], **({"description": p["description"]} if "description" in p else {})}
                  for key, p in folded.items()}
    operation["parameters"] = [p for p in parameters if p not in folded.values()] + [{
        "in": "query", "name": name, "required": True, "style": "form", "explode": True, "description": description,
        # No other keys: the other parameters are documented on their own (and an unknown one is ignored).
        "schema": {"type": "object", "properties": properties, "additionalProperties": False,
                   "anyOf": [{"required": [key], "properties": {key: _given(schema)}}
                             for key, schema in properties.items()]},
    }]


# apispec (OpenAPI 3.0) writes a nullable nested schema as anyOf [{"type": "object", "nullable":
# true}, {"$ref": ...}]: its first branch admits any object at all. This one admits null alone.
NULL_ONLY = {"type": "object", "nullable": True, "enum": [None]}


def _null_means_null(schema: Any) -> None:
    if isinstance(schema, dict):
        branches = schema.get("anyOf")
        if isinstance(branches, list) and any("$ref" in b for b in branches if isinstance(b, dict)):
            schema["anyOf"] = [dict(NULL_ONLY) if b == {"type": "object", "nullable": True} else b
                               for b in branches]
        for value in schema.values():
            _null_means_null(value)
    elif isinstance(schema, list):
        for value in schema:
            _null_means_null(value)


class AthenaSpecPlugin(BasePlugin):
    """Completes the document where marshmallow and the views cannot speak:

    - a schema's ``OPENAPI_ADDITIONAL_PROPERTIES`` (what its unknown keys may hold);
    - an optional query parameter may be sent empty (``page=``): it means "not given"
      (``allowEmptyValue``; athena.schemas.common.QuerySchema drops it);
    - AT_LEAST_ONE rules and LINKS (above)."""

    def schema_helper(self, name: str, definition: dict, **kwargs: Any) -> dict | None:
        _null_means_null(definition)
        schema = kwargs.get("schema")
        extra = getattr(schema, "OPENAPI_ADDITIONAL_PROPERTIES", None)
        return {"additionalProperties": extra} if extra is not None else None

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if isinstance(parameter, dict) and parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
            rule = AT_LEAST_ONE.get((method, path))
            if rule is not None:
                _fold_at_least_one(operation, *rule)
            for status, response in operation.get("responses", {}).items():
                links = LINKS.get((method, path, str(status)))
                if links and isinstance(response, dict):
                    response.setdefault("links", {}).update(links)


def _has_body() -> bool:
    if request.content_length:
        return True
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


BODY_REQUIRED = "The request body is required."


def _requiring_body(view_method: Callable) -> Callable:
    """The view method, answering 422 first when the request has no body at all: after the
    authentication of the view's decorators, before its arguments are parsed (webargs would load
    an absent JSON body as ``{}``, so an update without a body would change nothing and answer 200)."""

    @functools.wraps(view_method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _has_body():
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
