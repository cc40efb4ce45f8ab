"""The parsed-graph cache: a workflow's runs share one validated plan per process."""
from __future__ import annotations

import functools
import json

from athena.engine import Graph


@functools.lru_cache(maxsize=256)
def _parse_cached(canonical: str) -> Graph:
    nodes, edges = json.loads(canonical)
    return Graph.parse(nodes, edges)


def graph_key(nodes: list, edges: list) -> str:
    """The graph's canonical JSON: the key of its cached plan."""
    return json.dumps([nodes, edges], sort_keys=True, separators=(",", ":"))


def parsed_graph(nodes: list, edges: list, key: str | None = None) -> Graph:
    """Validated graphs are cached per process by content (``key``, from :func:`graph_key`): a
    workflow's runs share one plan. (The runner only reads the graph; node types are registered
    at import, so a cached plan stays valid for the life of the process.)"""
    return _parse_cached(key if key is not None else graph_key(nodes, edges))
