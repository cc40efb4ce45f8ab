"""Built-in node types.

Every module in this package (except ``base``, ``registry`` and modules whose
name starts with ``_``) is imported automatically, so adding a node type means
adding one module that decorates its class with ``@register``.
"""
from __future__ import annotations

import importlib
import pkgutil

from athena.engine.nodes.base import NodeResult, NodeType, Suspend
from athena.engine.nodes.registry import NodeRegistry, register, registry

__all__ = ["NodeRegistry", "NodeResult", "NodeType", "Suspend", "load_builtin_nodes", "register",
           "registry"]

_SKIP = {"base", "registry"}


def load_builtin_nodes() -> None:
    """Import every node module of this package (idempotent)."""
    for module in pkgutil.iter_modules(__path__):
        if module.name in _SKIP or module.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{module.name}")


load_builtin_nodes()
