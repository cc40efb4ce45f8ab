"""Exception types shared by the workflow engine."""
from __future__ import annotations


class NodeError(Exception):
    """A node failed; the message is shown to the user.

    ``retryable`` is False for deterministic failures (bad expressions, invalid
    parameters) that a node-level retry cannot fix.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class ExpressionError(NodeError):
    """An expression failed to compile or evaluate."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class StopRequested(Exception):
    """Raised by a node that noticed ``ctx.should_stop()`` while working."""


class GraphValidationError(ValueError):
    """The workflow graph is invalid.

    ``errors`` maps a location ("nodes", "edges", "nodes.<id>.parameters.<field>")
    to a list of messages; ``str(exc)`` is the first message.
    """

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        first = next((msgs[0] for msgs in errors.values() if msgs), "invalid graph")
        super().__init__(first)
        self.message = first

    def __str__(self) -> str:
        return self.message
