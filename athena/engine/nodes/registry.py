"""Registry of node types."""
from __future__ import annotations

from typing import Any, TypeVar

from athena.engine.nodes.base import NodeType
from athena.engine.schema_json import schema_to_json

T = TypeVar("T", bound=type[NodeType])


class NodeRegistry:
    """Maps a node ``type`` string to its singleton :class:`NodeType`."""

    def __init__(self, types: list[NodeType] | None = None) -> None:
        self._types: dict[str, NodeType] = {}
        for node_type in types or ():
            self._types[node_type.type] = node_type

    def register(self, cls: T) -> T:
        """Class decorator: instantiate ``cls`` and register it by its ``type``."""
        name = getattr(cls, "type", "")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{cls.__name__} must define a non-empty 'type'")
        existing = self._types.get(name)
        if existing is not None and _qualname(type(existing)) != _qualname(cls):
            raise ValueError(f"node type {name!r} is already registered by {type(existing).__name__}")
        self._types[name] = cls()
        return cls

    def get(self, type_name: str) -> NodeType | None:
        return self._types.get(type_name)

    def types(self) -> list[NodeType]:
        return list(self._types.values())

    def copy(self) -> NodeRegistry:
        """A new registry with the same types (e.g. to add test-only types)."""
        return NodeRegistry(self.types())

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types

    def __len__(self) -> int:
        return len(self._types)

    def describe(self) -> list[dict[str, Any]]:
        """Catalog of node types for the API / editor."""
        return [
            {
                "type": t.type,
                "description": t.description,
                "is_trigger": t.is_trigger,
                "handles": list(t.handles),
                "parameters": schema_to_json(t.schema),
            }
            for t in self._types.values()
        ]


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


registry = NodeRegistry()
register = registry.register
