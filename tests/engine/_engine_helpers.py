"""Small builders shared by the engine tests (no Flask/Redis)."""
from __future__ import annotations

from typing import Any

from athena.engine import (
    Event, Graph, NodeFinished, NodeRegistry, NodeStarted, RunContext, RunFinished, RunState,
    registry as global_registry, run_graph,
)


def node(node_id: str, type_: str, settings: dict[str, Any] | None = None,
         **parameters: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node_id, "type": type_, "parameters": parameters}
    if settings is not None:
        out["settings"] = settings
    return out


def edge(source: str, target: str, handle: str = "main", edge_id: str | None = None) -> dict[str, Any]:
    out = {"source": source, "target": target, "source_handle": handle}
    if edge_id is not None:
        out["id"] = edge_id
    return out


def execute(nodes: list[dict[str, Any]], edges: list[dict[str, Any]], *,
            registry: NodeRegistry = global_registry, state: RunState | None = None,
            **ctx_kwargs: Any) -> tuple[list[Event], RunState]:
    graph = Graph.parse(nodes, edges, registry=registry)
    state = state if state is not None else RunState()
    ctx_kwargs.setdefault("sleep", lambda seconds: None)
    events = list(run_graph(graph, RunContext(**ctx_kwargs), state))
    return events, state


def started(events: list[Event]) -> list[str]:
    return [ev.node_id for ev in events if isinstance(ev, NodeStarted)]


def finished(events: list[Event]) -> dict[str, dict[str, Any]]:
    return {ev.node_id: ev.entry for ev in events if isinstance(ev, NodeFinished)}


def statuses(state: RunState) -> dict[str, str]:
    return {node_id: entry["status"] for node_id, entry in state.entries.items()}


def last(events: list[Event]) -> Any:
    assert events, "no events"
    return events[-1]


def assert_finished(events: list[Event], status: str = "completed") -> RunFinished:
    final = last(events)
    assert isinstance(final, RunFinished), final
    assert final.status == status, (final.status, final.error)
    return final
