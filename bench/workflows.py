"""The benchmark workflows (the same shapes as the n8n peer's bench1 / bench40)."""
from __future__ import annotations

from typing import Any


def set_chain(count: int, prefix: str = "set") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """webhook -> ``count`` set nodes in a line; each keeps its input and adds a static ``step``."""
    nodes: list[dict[str, Any]] = [{"id": "hook", "type": "webhook"}]
    edges: list[dict[str, Any]] = []
    previous = "hook"
    for i in range(1, count + 1):
        node_id = f"{prefix}{i}"
        nodes.append({"id": node_id, "type": "set", "parameters": {"fields": {"step": i}, "keep_input": True}})
        edges.append({"source": previous, "target": node_id})
        previous = node_id
    return nodes, edges


def wait_then_set(seconds: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [{"id": "hook", "type": "webhook"},
             {"id": "pause", "type": "wait", "parameters": {"seconds": seconds}},
             {"id": "after", "type": "set", "parameters": {"fields": {"done": True}}}]
    return nodes, [{"source": "hook", "target": "pause"}, {"source": "pause", "target": "after"}]


def http_then_set(url: str, timeout: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [{"id": "hook", "type": "webhook"},
             {"id": "call", "type": "http_request", "parameters": {"url": url, "timeout": timeout,
                                                                  "response_format": "text"}},
             {"id": "after", "type": "set", "parameters": {"fields": {"done": True}}}]
    return nodes, [{"source": "hook", "target": "call"}, {"source": "call", "target": "after"}]


def http_io(url: str, sets: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Scenario 8: webhook -> ``http_request`` (GET ``url``, an instant JSON service) -> ``sets``
    set nodes (each keeps its input and adds a static ``step``). ``io1``: sets=0; ``io5``: sets=3."""
    nodes: list[dict[str, Any]] = [{"id": "hook", "type": "webhook"},
                                   {"id": "call", "type": "http_request",
                                    "parameters": {"method": "GET", "url": url, "timeout": 10}}]
    edges: list[dict[str, Any]] = [{"source": "hook", "target": "call"}]
    previous = "call"
    for i in range(1, sets + 1):
        node_id = f"set{i}"
        nodes.append({"id": node_id, "type": "set", "parameters": {"fields": {"step": i}, "keep_input": True}})
        edges.append({"source": previous, "target": node_id})
        previous = node_id
    return nodes, edges
