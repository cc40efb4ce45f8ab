"""Validation helpers for node parameters and settings.

Parameters may hold ``{{ ... }}`` expressions whose value is only known at run
time, so schema errors on fields whose raw value is an expression string are
ignored at save time (the node's schema is enforced again after evaluation).
Non-expression values must still satisfy the schema, and expression syntax is
checked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from athena.engine.expressions import Evaluator, contains_expression, default_evaluator
from athena.engine.nodes.base import NodeType

ON_ERROR_CHOICES = ("stop", "continue")
MAX_ATTEMPTS_LIMIT = 10
Errors = dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Normalised per-node execution settings."""

    timeout: float | None = None
    max_attempts: int = 1
    backoff: float = 0.0
    on_error: str = "stop"


DEFAULT_SETTINGS = NodeSettings()


def validate_parameters(node_id: str, node_type: NodeType, parameters: dict[str, Any],
                        evaluator: Evaluator = default_evaluator) -> Errors:
    """Leniently validate raw parameters; keys are "nodes.<id>.parameters[.<path>]"."""
    errors: Errors = {}
    try:
        node_type.schema.load(parameters)
    except ValidationError as exc:
        unknown = node_type.schema.error_messages.get("unknown", "Unknown field.")
        pruned = _prune(exc.messages, parameters, unknown)
        if pruned:
            _flatten(pruned, [], node_id, errors)
    _check_expressions(parameters, [], node_id, evaluator, errors)
    return errors


def _child(data: Any, key: Any) -> Any:
    if isinstance(data, dict):
        if key in data:
            return data[key]
        if key == "value":  # marshmallow Dict value errors: {key: {"value": [...]}}
            return data
        return None
    if isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
        return data[key]
    if key == "value":
        return data
    return None


def _prune(messages: Any, data: Any, unknown: str) -> Any:
    """Drop schema errors whose offending raw value is an expression string."""
    if contains_expression(data):
        if isinstance(messages, list):
            kept = [m for m in messages if m == unknown]
            return kept or None
        return None
    if isinstance(messages, dict):
        out = {}
        for key, sub in messages.items():
            pruned = _prune(sub, _child(data, key), unknown)
            if pruned:
                out[key] = pruned
        return out or None
    return messages


def _flatten(messages: Any, path: list[str], node_id: str, errors: Errors) -> None:
    if isinstance(messages, dict):
        for key, sub in messages.items():
            _flatten(sub, path if key == "_schema" else [*path, str(key)], node_id, errors)
        return
    items = messages if isinstance(messages, list) else [messages]
    for message in items:
        if isinstance(message, (dict, list)):
            _flatten(message, path, node_id, errors)
            continue
        _add_param_error(errors, node_id, path, str(message))


def _add_param_error(errors: Errors, node_id: str, path: list[str], message: str) -> None:
    dotted = ".".join(path)
    key = f"nodes.{node_id}.parameters" + (f".{dotted}" if dotted else "")
    label = f"parameter '{dotted}'" if dotted else "parameters"
    errors.setdefault(key, []).append(f"node '{node_id}': {label}: {message}")


def _check_expressions(value: Any, path: list[str], node_id: str, evaluator: Evaluator,
                       errors: Errors) -> None:
    if isinstance(value, str):
        problem = evaluator.check(value)
        if problem:
            _add_param_error(errors, node_id, path, problem)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_expressions(item, [*path, str(key)], node_id, evaluator, errors)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_expressions(item, [*path, str(index)], node_id, evaluator, errors)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_settings(node_id: str, settings: Any) -> tuple[NodeSettings, Errors]:
    """Validate a node's ``settings`` object and return normalised settings."""
    errors: Errors = {}

    def fail(field: str, message: str) -> None:
        errors.setdefault(f"nodes.{node_id}.settings.{field}", []).append(
            f"node '{node_id}': settings.{field} {message}")

    if settings is None:
        return DEFAULT_SETTINGS, errors
    if not isinstance(settings, dict):
        errors[f"nodes.{node_id}.settings"] = [f"node '{node_id}': settings must be an object"]
        return DEFAULT_SETTINGS, errors
    timeout = settings.get("timeout")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        fail("timeout", "must be a positive number")
    on_error = settings.get("on_error", "stop")
    if on_error is None:
        on_error = "stop"
    if on_error not in ON_ERROR_CHOICES:
        fail("on_error", f"must be one of: {', '.join(ON_ERROR_CHOICES)}")
    max_attempts, backoff = 1, 0.0
    retry = settings.get("retry")
    if retry is not None:
        if not isinstance(retry, dict):
            fail("retry", "must be an object")
        else:
            unknown = sorted(set(retry) - {"max_attempts", "backoff"})
            if unknown:
                fail("retry", f"has unknown field(s): {', '.join(map(str, unknown))}")
            max_attempts = retry.get("max_attempts", 1)
            if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or not (
                    1 <= max_attempts <= MAX_ATTEMPTS_LIMIT):
                fail("retry.max_attempts", f"must be an integer between 1 and {MAX_ATTEMPTS_LIMIT}")
            backoff = retry.get("backoff", 0)
            if not _is_number(backoff) or backoff < 0:
                fail("retry.backoff", "must be a number >= 0")
    if errors:
        return DEFAULT_SETTINGS, errors
    return NodeSettings(timeout=float(timeout) if timeout is not None else None,
                        max_attempts=max_attempts, backoff=float(backoff),
                        on_error=on_error), errors
