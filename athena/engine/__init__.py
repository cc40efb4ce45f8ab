"""Athena's pure workflow engine: graph validation, expressions, node types, runner.

This package does no I/O of its own and must not import Flask, Redis, RQ or
SQLAlchemy; I/O-capable node types receive services via ``RunContext.services``.
"""
from __future__ import annotations

from athena.engine.context import NodeContext
from athena.engine.errors import ExpressionError, GraphValidationError, NodeError, StopRequested
from athena.engine.events import (
    Event, LlmTokens, LlmUsage, LoopProgress, NodeFinished, NodeStarted, Published, RunFinished, RunStopped,
    RunSuspended,
)
from athena.engine.expressions import Evaluator, default_evaluator, evaluate, is_truthy
from athena.engine.graph import Graph, validate_graph
from athena.engine.nodes import NodeRegistry, NodeResult, NodeType, Suspend, register, registry
from athena.engine.nodes.base import Iterate, ParametersSchema
from athena.engine.runner import final_output, run_graph
from athena.engine.state import RunContext, RunState
from athena.timeutil import iso, parse_iso
from athena.engine.validation import NodeSettings

__all__ = [
    "Evaluator", "Event", "ExpressionError", "Graph", "GraphValidationError", "Iterate",
    "LlmTokens", "LlmUsage", "LoopProgress", "NodeContext", "Published",
    "NodeError", "NodeFinished", "NodeRegistry", "NodeResult", "NodeSettings", "NodeStarted",
    "NodeType", "ParametersSchema", "RunContext", "RunFinished", "RunState", "RunStopped",
    "RunSuspended", "StopRequested", "Suspend", "default_evaluator", "evaluate", "final_output",
    "is_truthy", "iso", "parse_iso", "register", "registry", "run_graph",
    "validate_graph",
]
