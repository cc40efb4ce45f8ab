"""Loop bodies: the nodes a loop node (``NodeType.body_handle``) runs once per item.

The body of loop node ``L`` is every node reachable from ``L``'s body handle
("item"), stopping where the graph rejoins a node reachable from ``L``'s other
handles ("done", "error") -- those nodes run once, after the loop.  Rules:

* only ``L``'s body handle may lead into the body: a body node with an
  incoming edge from elsewhere is refused (the node is named);
* the body handle must not lead straight to a node also reachable from
  ``L``'s other handles;
* loops nest: a loop node inside a body has its own, smaller body.

Edges from a body node to a node outside that body ("closing" edges) only
mark where the body ends: they carry no data when the node outside runs.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from athena.engine.nodes.base import NodeType

__all__ = ["Bodies", "analyse_bodies"]

Errors = dict[str, list[str]]
Edge = dict[str, Any]


@dataclass
class Bodies:
    """Result of :func:`analyse_bodies`."""

    body: dict[str, list[str]] = field(default_factory=dict)  # loop id -> body ids (topo order)
    owner: dict[str, str | None] = field(default_factory=dict)  # node -> innermost loop or None
    closing: set[str] = field(default_factory=set)  # ids of edges leaving a body


def _reach(starts: list[str], outgoing: dict[str, list[Edge]],
           blocked: frozenset[str] | set[str] = frozenset()) -> set[str]:
    seen: set[str] = set()
    queue = deque(s for s in starts if s not in blocked)
    while queue:
        node_id = queue.popleft()
        if node_id in seen:
            continue
        seen.add(node_id)
        queue.extend(e["target"] for e in outgoing[node_id]
                     if e["target"] not in seen and e["target"] not in blocked)
    return seen


def analyse_bodies(types: dict[str, NodeType], incoming: dict[str, list[Edge]],
                   outgoing: dict[str, list[Edge]], order: list[str]) -> tuple[Bodies, Errors]:
    """Find every loop body in an acyclic graph; return them and any shape errors."""
    errors: Errors = {}
    result = Bodies(owner={node_id: None for node_id in order})
    position = {node_id: index for index, node_id in enumerate(order)}
    sets: dict[str, set[str]] = {}
    for loop_id in order:
        handle = types[loop_id].body_handle
        if handle is None:
            continue
        starts = [e["target"] for e in outgoing[loop_id] if e["source_handle"] == handle]
        after = _reach([e["target"] for e in outgoing[loop_id] if e["source_handle"] != handle],
                       outgoing)
        for target in dict.fromkeys(starts):
            if target in after:
                errors.setdefault("edges", []).append(
                    f"node '{target}': reached from the '{handle}' output of loop node "
                    f"'{loop_id}' and also from its other outputs; the loop body must be "
                    f"separate from what runs after the loop")
        body = _reach(starts, outgoing, after)
        _check_entries(loop_id, handle, body, incoming, position, errors)
        sets[loop_id] = body
        result.body[loop_id] = sorted(body, key=position.__getitem__)
        for node_id in body:
            result.closing.update(e["id"] for e in outgoing[node_id] if e["target"] not in body)
    for node_id in order:
        holders = [loop_id for loop_id, body in sets.items() if node_id in body]
        if holders:
            result.owner[node_id] = min(holders, key=lambda loop_id: len(sets[loop_id]))
    return result, errors


def _check_entries(loop_id: str, handle: str, body: set[str], incoming: dict[str, list[Edge]],
                   position: dict[str, int], errors: Errors) -> None:
    for node_id in sorted(body, key=position.__getitem__):
        for edge in incoming[node_id]:
            source = edge["source"]
            if source in body or (source == loop_id and edge["source_handle"] == handle):
                continue
            errors.setdefault("edges", []).append(
                f"node '{node_id}': it is in the body of loop node '{loop_id}' but edge "
                f"'{edge['id']}' enters it from '{source}' (handle '{edge['source_handle']}'); "
                f"only the '{handle}' output of '{loop_id}' may lead into the loop body")
