"""Workflow graph parsing and validation."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from athena.engine.bodies import analyse_bodies
from athena.engine.errors import GraphValidationError
from athena.engine.nodes.base import NodeType
from athena.engine.nodes.registry import NodeRegistry, registry as default_registry
from athena.engine.validation import Errors, NodeSettings, parse_settings, validate_parameters

__all__ = ["Graph", "GraphValidationError", "validate_graph"]


@dataclass
class Graph:
    """A validated workflow graph.

    ``nodes`` and ``edges`` hold normalised copies (defaults filled in);
    ``order`` is a deterministic topological order (Kahn, ties broken by node
    definition order).  Loop nodes (``NodeType.body_handle``) own a body run
    once per item (see :mod:`athena.engine.bodies`): ``bodies`` maps a loop
    node to its body (topological order, nested bodies included), ``owner``
    maps each node to its innermost loop (None at top level), ``levels`` maps
    an owner to the nodes it runs directly, and ``inputs`` is ``incoming``
    without the edges that leave a loop body (they carry no data).
    """

    nodes: dict[str, dict[str, Any]]
    edges: list[dict[str, Any]]
    node_types: dict[str, NodeType]
    settings: dict[str, NodeSettings]
    incoming: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outgoing: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    bodies: dict[str, list[str]] = field(default_factory=dict)
    owner: dict[str, str | None] = field(default_factory=dict)
    levels: dict[str | None, list[str]] = field(default_factory=dict)
    inputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def level(self, owner: str | None) -> list[str]:
        """Nodes run directly at the top (None) or by one iteration of loop ``owner``."""
        return self.levels.get(owner, [])

    @classmethod
    def parse(cls, nodes: Any, edges: Any, registry: NodeRegistry = default_registry) -> Graph:
        """Validate raw node/edge lists; raise GraphValidationError listing every problem."""
        return _Parser(registry).parse(nodes, edges)


def validate_graph(nodes: Any, edges: Any, registry: NodeRegistry = default_registry) -> Graph:
    """Alias of :meth:`Graph.parse`."""
    return Graph.parse(nodes, edges, registry)


class _Parser:
    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry
        self.errors: Errors = {}

    def fail(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)

    def parse(self, raw_nodes: Any, raw_edges: Any) -> Graph:
        if not isinstance(raw_nodes, list):
            self.fail("nodes", "nodes must be a list")
            raw_nodes = []
        if raw_edges is None:
            raw_edges = []
        if not isinstance(raw_edges, list):
            self.fail("edges", "edges must be a list")
            raw_edges = []
        nodes: dict[str, dict[str, Any]] = {}
        types: dict[str, NodeType] = {}
        settings: dict[str, NodeSettings] = {}
        for index, raw in enumerate(raw_nodes):
            self._parse_node(index, raw, nodes, types, settings)
        edges = self._parse_edges(raw_edges, nodes, types, settings)
        graph = Graph(nodes=nodes, edges=edges, node_types=types, settings=settings,
                      incoming={node_id: [] for node_id in nodes},
                      outgoing={node_id: [] for node_id in nodes})
        for edge in edges:
            graph.outgoing[edge["source"]].append(edge)
            graph.incoming[edge["target"]].append(edge)
        graph.roots = [node_id for node_id in nodes if not graph.incoming[node_id]]
        graph.order = self._toposort(graph)
        if not self.errors:
            self._loops(graph)
        if self.errors:
            raise GraphValidationError(self.errors)
        return graph

    def _loops(self, graph: Graph) -> None:
        bodies, errors = analyse_bodies(graph.node_types, graph.incoming, graph.outgoing,
                                        graph.order)
        for key, messages in errors.items():
            self.errors.setdefault(key, []).extend(messages)
        graph.bodies, graph.owner = bodies.body, bodies.owner
        graph.levels = {None: [], **{loop_id: [] for loop_id in bodies.body}}
        for node_id in graph.order:
            graph.levels[bodies.owner[node_id]].append(node_id)
        graph.inputs = {node_id: [e for e in edges if e["id"] not in bodies.closing]
                        for node_id, edges in graph.incoming.items()}

    def _parse_node(self, index: int, raw: Any, nodes: dict[str, dict[str, Any]],
                    types: dict[str, NodeType], settings: dict[str, NodeSettings]) -> None:
        if not isinstance(raw, dict):
            self.fail("nodes", f"nodes[{index}] must be an object")
            return
        node_id = raw.get("id")
        if not isinstance(node_id, str) or not node_id.strip():
            self.fail("nodes", f"nodes[{index}]: node id must be a non-empty string")
            return
        if node_id in nodes:
            self.fail("nodes", f"node '{node_id}': duplicate node id")
            return
        node = {"id": node_id, "type": raw.get("type"), "name": raw.get("name") or node_id,
                "parameters": raw.get("parameters"), "position": raw.get("position"),
                "settings": raw.get("settings")}
        nodes[node_id] = node
        if node["parameters"] is None:
            node["parameters"] = {}
        if not isinstance(node["name"], str):
            self.fail("nodes", f"node '{node_id}': name must be a string")
        if node["position"] is not None and not isinstance(node["position"], dict):
            self.fail("nodes", f"node '{node_id}': position must be an object")
        node_settings, setting_errors = parse_settings(node_id, node["settings"])
        settings[node_id] = node_settings
        for key, messages in setting_errors.items():
            self.errors.setdefault(key, []).extend(messages)
        type_name = node["type"]
        node_type = self.registry.get(type_name) if isinstance(type_name, str) else None
        if node_type is None:
            self.fail("nodes", f"node '{node_id}': unknown node type {type_name!r}")
            return
        types[node_id] = node_type
        if not isinstance(node["parameters"], dict):
            self.fail(f"nodes.{node_id}.parameters",
                      f"node '{node_id}': parameters must be an object")
            return
        for key, messages in validate_parameters(node_id, node_type, node["parameters"]).items():
            self.errors.setdefault(key, []).extend(messages)

    def _parse_edges(self, raw_edges: list[Any], nodes: dict[str, dict[str, Any]],
                     types: dict[str, NodeType],
                     settings: dict[str, NodeSettings]) -> list[dict[str, Any]]:
        edges: list[dict[str, Any]] = []
        seen: set[str] = set()
        handles_cache: dict[str, list[str]] = {}
        for index, raw in enumerate(raw_edges):
            if not isinstance(raw, dict):
                self.fail("edges", f"edges[{index}] must be an object")
                continue
            edge_id = raw.get("id")
            if edge_id is None or edge_id == "":
                edge_id = f"e{index}"
            elif not isinstance(edge_id, str):
                self.fail("edges", f"edges[{index}]: edge id must be a string")
                continue
            if edge_id in seen:
                self.fail("edges", f"edge '{edge_id}': duplicate edge id")
                continue
            seen.add(edge_id)
            edge = {"id": edge_id, "source": raw.get("source"), "target": raw.get("target"),
                    "source_handle": raw.get("source_handle") or "main",
                    "target_handle": raw.get("target_handle") or "main"}
            if self._check_edge(edge, nodes, types, settings, handles_cache):
                edges.append(edge)
        return edges

    def _check_edge(self, edge: dict[str, Any], nodes: dict[str, dict[str, Any]],
                    types: dict[str, NodeType], settings: dict[str, NodeSettings],
                    handles_cache: dict[str, list[str]]) -> bool:
        edge_id, ok = edge["id"], True
        for end in ("source", "target"):
            ref = edge[end]
            if not isinstance(ref, str) or not ref:
                self.fail("edges", f"edge '{edge_id}': {end} is required")
                ok = False
            elif ref not in nodes:
                self.fail("edges", f"edge '{edge_id}': unknown {end} node '{ref}'")
                ok = False
        for end in ("source_handle", "target_handle"):
            if not isinstance(edge[end], str):
                self.fail("edges", f"edge '{edge_id}': {end} must be a string")
                ok = False
        if not ok:
            return False
        source, target = edge["source"], edge["target"]
        target_type = types.get(target)
        if target_type is not None and target_type.is_trigger:
            self.fail("edges", f"edge '{edge_id}': cannot connect into trigger node '{target}'")
            ok = False
        source_type = types.get(source)
        if source_type is not None:
            handles = handles_cache.get(source)
            if handles is None:
                handles = _output_handles(source_type, nodes[source]["parameters"])
                if settings[source].on_error == "continue":
                    handles.append("error")
                handles_cache[source] = handles
            if edge["source_handle"] not in handles:
                self.fail("edges", f"edge '{edge_id}': node '{source}' has no output handle "
                                   f"'{edge['source_handle']}' (available: {', '.join(handles)})")
                ok = False
        return ok

    def _toposort(self, graph: Graph) -> list[str]:
        position = {node_id: index for index, node_id in enumerate(graph.nodes)}
        indegree = {node_id: len(edges) for node_id, edges in graph.incoming.items()}
        heap = [position[node_id] for node_id in graph.roots]
        heapq.heapify(heap)
        ids = list(graph.nodes)
        order: list[str] = []
        while heap:
            node_id = ids[heapq.heappop(heap)]
            order.append(node_id)
            for edge in graph.outgoing[node_id]:
                target = edge["target"]
                indegree[target] -= 1
                if indegree[target] == 0:
                    heapq.heappush(heap, position[target])
        if len(order) < len(ids):
            cycle = _find_cycle(graph, {n for n in ids if indegree[n] > 0})
            self.fail("edges", "cycle detected: " + " -> ".join(cycle))
        return order


def _output_handles(node_type: NodeType, parameters: Any) -> list[str]:
    try:
        return list(node_type.output_handles(parameters if isinstance(parameters, dict) else {}))
    except Exception:  # noqa: BLE001 - odd parameters must not crash validation
        return list(node_type.handles)


def _find_cycle(graph: Graph, remaining: set[str]) -> list[str]:
    """Return one cycle (first node repeated at the end) among ``remaining``.

    Every remaining node has a predecessor that is also remaining, so walking
    incoming edges backwards must revisit a node.
    """
    node_id = next(node_id for node_id in graph.nodes if node_id in remaining)
    path: list[str] = []
    index_in_path: dict[str, int] = {}
    while node_id not in index_in_path:
        index_in_path[node_id] = len(path)
        path.append(node_id)
        node_id = next(e["source"] for e in graph.incoming[node_id] if e["source"] in remaining)
    cycle = list(reversed(path[index_in_path[node_id]:]))
    position = {n: i for i, n in enumerate(graph.nodes)}
    first = min(range(len(cycle)), key=lambda i: position[cycle[i]])
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]
