"""What the OpenAPI document says that the views alone do not: OpenAPI links between operations,
"at least one of" rules as one object parameter, empty query values allowed, nullable nested
objects that are null only (AthenaSpecPlugin, installed by athena.api.base.AthenaApi)."""
from __future__ import annotations

from typing import Any

from apispec import BasePlugin

from athena.api.paths import API

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
