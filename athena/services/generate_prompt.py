"""What the workflow generator tells the model, and how it reads the answer.

The system prompt is built from the live node registry (type, description, parameter JSON
Schema, output handles), so a new node type is usable by the generator as soon as it is
registered. The answer is checked with the same graph validator as every workflow write."""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from athena.engine import Graph, GraphValidationError, NodeRegistry

Errors = dict[str, list[str]]
NODE_KEYS = ("id", "type", "name", "parameters", "position", "settings")
EDGE_KEYS = ("id", "source", "target", "source_handle", "target_handle")
LAYER_GAP_X = 300
ROW_GAP_Y = 160

RULES = """\
You design workflows for Athena, a workflow-automation engine. A workflow is a directed acyclic
graph of nodes joined by edges. Reply with ONE JSON object and nothing else:
{"name": str, "description": str, "nodes": [node, ...], "edges": [edge, ...]}

node: {"id": "snake_case_id", "type": "<one of the node types below>", "name": "Human label",
       "parameters": {...exactly the parameters of that type...},
       "settings": {"timeout": 30, "retry": {"max_attempts": 3, "backoff": 2}, "on_error": "stop"}}
edge: {"id": "e1", "source": "<node id>", "target": "<node id>", "source_handle": "main",
       "target_handle": "main"}

Rules:
- Node ids are unique; expressions refer to nodes by id.
- Start with exactly one trigger node (a type marked trigger); nothing connects into a trigger.
- Only use the node types listed below, and only their documented parameters; required
  parameters must be present and literal values must satisfy the schema (types, ranges, enums).
- An edge's source_handle must be one of the source node's output handles. Branching nodes name
  their handles ("if": "true"/"false"; "switch": the case names and "default"). A node whose
  settings have "on_error": "continue" also gets an "error" handle.
- No cycles. "settings" and "position" are optional; omit what you do not need.

Expressions: any string parameter may contain Jinja2 expressions, evaluated at run time:
- {{ trigger.body.email }}, {{ trigger.query.page }}, {{ trigger.headers['x-id'] }}: the webhook
  request (a manual run's trigger is its input object, e.g. {{ trigger.email }})
- {{ nodes.fetch_user.output.name }}: the output of an earlier node, by id
- {{ input }}: the output of the node connected into this one
- {{ variables.api_base }}: workflow variables; {{ execution.uuid }}: the current execution
A parameter that is exactly one expression keeps the value's type (a number stays a number).
"""


def describe_node_types(registry: NodeRegistry) -> str:
    parts = []
    for item in registry.describe():
        kind = " (trigger)" if item["is_trigger"] else ""
        parts.append(f"### {item['type']}{kind}\n{item['description']}\n"
                     f"output handles: {', '.join(item['handles'])}\n"
                     f"parameters (JSON Schema): {json.dumps(item['parameters'], separators=(',', ':'))}")
    return "\n\n".join(parts)


def system_prompt(registry: NodeRegistry) -> str:
    return f"{RULES}\nNode types:\n\n{describe_node_types(registry)}\n"


def response_format(registry: NodeRegistry) -> dict[str, Any]:
    """Structured output: the workflow envelope; parameters stay free-form (the validator and
    the repair rounds enforce each type's schema)."""
    types = [t.type for t in registry.types()]
    node = {"type": "object", "required": ["id", "type", "parameters"], "properties": {
        "id": {"type": "string"}, "type": {"type": "string", "enum": types}, "name": {"type": "string"},
        "parameters": {"type": "object"}, "settings": {"type": "object"},
        "position": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}}}
    edge = {"type": "object", "required": ["source", "target"], "properties": {
        key: {"type": "string"} for key in EDGE_KEYS}}
    schema = {"type": "object", "required": ["name", "description", "nodes", "edges"], "properties": {
        "name": {"type": "string"}, "description": {"type": "string"},
        "nodes": {"type": "array", "items": node}, "edges": {"type": "array", "items": edge}}}
    return {"type": "json_schema",
            "json_schema": {"name": "workflow", "description": "An Athena workflow graph", "schema": schema}}


def format_errors(errors: Errors) -> str:
    return "\n".join(f"- {key}: {message}" for key, messages in errors.items() for message in messages)


def repair_message(errors: Errors) -> str:
    return ("That workflow is invalid. The validator reported:\n" + format_errors(errors)
            + "\nFix every problem and reply with the complete corrected workflow JSON object.")


def _clean(items: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(items, list):
        return items
    return [{k: item[k] for k in keys if k in item} if isinstance(item, dict) else item for item in items]


def read_candidate(text: str, registry: NodeRegistry, max_nodes: int,
                   fallback_name: str) -> tuple[dict[str, Any] | None, Errors]:
    """Parse and validate the model's reply: ``(workflow, {})`` or ``(candidate, errors)``."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, {"json": [f"the reply is not valid JSON: {exc}"]}
    if not isinstance(value, dict):
        return None, {"json": ["the reply must be a JSON object with name, description, nodes and edges"]}
    name = value.get("name") if isinstance(value.get("name"), str) and value["name"].strip() else fallback_name
    description = value.get("description") if isinstance(value.get("description"), str) else None
    candidate = {"name": name.strip()[:255], "description": description[:10_000] if description else description,
                 "nodes": _clean(value.get("nodes"), NODE_KEYS), "edges": _clean(value.get("edges", []), EDGE_KEYS)}
    nodes, edges = candidate["nodes"], candidate["edges"]
    if isinstance(nodes, list) and len(nodes) > max_nodes:
        return candidate, {"nodes": [f"a workflow may have at most {max_nodes} nodes"]}
    try:
        graph = Graph.parse(nodes, edges, registry)
    except GraphValidationError as exc:
        return candidate, exc.errors
    if not graph.nodes:
        return candidate, {"nodes": ["the workflow has no nodes"]}
    if not any(t.is_trigger for t in graph.node_types.values()):
        triggers = ", ".join(t.type for t in registry.types() if t.is_trigger)
        return candidate, {"nodes": [f"the workflow needs a trigger node (one of: {triggers})"]}
    layout(graph, nodes)
    for index, edge in enumerate(edges):
        if isinstance(edge, dict) and not edge.get("id"):
            edge["id"] = graph.edges[index]["id"]
    return candidate, {}


def _has_position(node: dict[str, Any]) -> bool:
    position = node.get("position")
    return isinstance(position, dict) and all(
        isinstance(position.get(axis), (int, float)) and not isinstance(position.get(axis), bool)
        for axis in ("x", "y"))


def layout(graph: Graph, nodes: list[dict[str, Any]]) -> None:
    """Give nodes without a position one: layered left to right by topological depth."""
    depth: dict[str, int] = {}
    for node_id in graph.order:
        depth[node_id] = max((depth[e["source"]] + 1 for e in graph.incoming[node_id]), default=0)
    rows: dict[int, int] = defaultdict(int)
    for node in nodes:
        layer = depth.get(node["id"], 0)
        row = rows[layer]
        rows[layer] += 1
        if not _has_position(node):
            node["position"] = {"x": layer * LAYER_GAP_X, "y": row * ROW_GAP_Y}
