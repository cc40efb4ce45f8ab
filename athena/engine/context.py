"""The object handed to :meth:`NodeType.run`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import ValidationError

from athena.engine.errors import NodeError
from athena.engine.expressions import Evaluator, default_evaluator

if TYPE_CHECKING:
    from athena.engine.events import Published
    from athena.engine.nodes.base import NodeType
    from athena.engine.state import RunContext

__all__ = ["NodeContext"]


class NodeContext:
    """Per-execution view of one node.

    ``parameters`` are raw (unevaluated); use :meth:`evaluate` / :meth:`params`.
    ``input`` is the upstream output (a dict ``{source_id: output}`` when
    several incoming edges are active); ``inputs`` always maps active source
    ids to their outputs.
    """

    __slots__ = ("node", "node_id", "node_type", "parameters", "input", "inputs", "scope", "run",
                 "resume", "timeout", "attempt", "evaluator")

    def __init__(self, node: dict[str, Any], node_type: NodeType, run: RunContext,
                 scope: dict[str, Any], input: Any = None,  # noqa: A002 - public name
                 inputs: dict[str, Any] | None = None, resume: Any = None,
                 timeout: float | None = None, attempt: int = 1,
                 evaluator: Evaluator = default_evaluator) -> None:
        self.node = node
        self.node_id: str = node["id"]
        self.node_type = node_type
        self.parameters: dict[str, Any] = node.get("parameters") or {}
        self.input = input
        self.inputs: dict[str, Any] = inputs if inputs is not None else {}
        self.scope = scope
        self.run = run
        self.resume = resume
        self.timeout = timeout
        self.attempt = attempt
        self.evaluator = evaluator

    @property
    def services(self) -> dict[str, Any]:
        return self.run.services

    def evaluate(self, value: Any, extra: dict[str, Any] | None = None) -> Any:
        """Evaluate expressions in ``value`` against the scope (plus ``extra``)."""
        scope = {**self.scope, **extra} if extra else self.scope
        return self.evaluator.evaluate(value, scope)

    def load(self, data: Any) -> dict[str, Any]:
        """Validate already-evaluated parameters with the node type's schema."""
        try:
            return self.node_type.schema.load(data)
        except ValidationError as exc:
            raise NodeError(f"invalid parameters for node '{self.node_id}': "
                            f"{_describe(exc.messages)}",
                            retryable=False) from None

    def params(self) -> dict[str, Any]:
        """Evaluate all parameters, then load them with the Parameters schema."""
        return self.load(self.evaluate(self.parameters))

    def should_stop(self) -> bool:
        return bool(self.run.should_stop())

    def publish(self, event: Published) -> None:
        """Send a live event of this node (e.g. streamed LLM tokens) to whoever drives the run."""
        self.run.publish(event)


def _describe(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        parts = []
        for key, sub in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            parts.append(_describe(sub, name))
        return "; ".join(parts)
    if isinstance(messages, list):
        text = " ".join(str(m) if not isinstance(m, (dict, list)) else _describe(m, prefix)
                        for m in messages)
    else:
        text = str(messages)
    return f"{prefix}: {text}" if prefix else text
