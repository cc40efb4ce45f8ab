"""The evaluation budget of expressions and templates (athena/engine/sandbox.py applies it).

One budget per evaluation: loop iterations (``{% for %}`` items, ``range()`` items), the size of
each value built and the total built; plus the deadline of the node running it
(:func:`node_deadline`, set by the runner), checked as iterations and values are spent. Limits
are :data:`LIMITS`; the app sets them from its configuration with :func:`configure`.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_CLOCK_EVERY = 256  # iterations between two looks at the clock


@dataclass
class Limits:
    """Per-evaluation bounds (ATHENA_EXPRESSION_MAX_ITERATIONS, _MAX_VALUE_SIZE, _MAX_BUILT)."""

    max_iterations: int = 1_000_000  # loop iterations and range() items
    max_value_size: int = 1_000_000  # characters/items of one value built
    max_built: int = 10_000_000  # characters/items built in total


LIMITS = Limits()


def configure(*, max_iterations: int | None = None, max_value_size: int | None = None,
              max_built: int | None = None) -> None:
    """Set the process's limits (None keeps the current value)."""
    for name, value in (("max_iterations", max_iterations), ("max_value_size", max_value_size),
                        ("max_built", max_built)):
        if value is not None:
            setattr(LIMITS, name, int(value))


class LimitError(Exception):
    """An expression exceeded a safety bound."""


class DeadlineExceeded(LimitError):
    """The node's timeout or the run's maximum duration passed while an expression ran."""


@dataclass
class _Deadline:
    at: float  # time.monotonic()
    message: str


@dataclass
class _Budget:
    iterations: int
    built: int
    deadline: _Deadline | None


_deadline: ContextVar[_Deadline | None] = ContextVar("athena_node_deadline", default=None)
_budget: ContextVar[_Budget | None] = ContextVar("athena_expression_budget", default=None)


@contextmanager
def node_deadline(seconds: float | None, message: str) -> Iterator[None]:
    """Expressions evaluated inside fail with ``message`` once ``seconds`` have passed (None:
    no deadline; an earlier deadline already in force stays)."""
    outer = _deadline.get()
    at = time.monotonic() + seconds if seconds is not None else None
    if at is None or (outer is not None and outer.at <= at):
        yield
        return
    token = _deadline.set(_Deadline(at, message))
    try:
        yield
    finally:
        _deadline.reset(token)


def start_budget() -> Any:
    """Begin a fresh budget for one evaluation; returns a reset token."""
    return _budget.set(_Budget(LIMITS.max_iterations, LIMITS.max_built, _deadline.get()))


def end_budget(token: Any) -> None:
    _budget.reset(token)


def _check_clock(budget: _Budget) -> None:
    if budget.deadline is not None and time.monotonic() > budget.deadline.at:
        raise DeadlineExceeded(budget.deadline.message)


def spend_iterations(count: int) -> None:
    budget = _budget.get()
    if budget is None:
        return
    before = budget.iterations
    budget.iterations -= count
    if budget.iterations < 0:
        raise LimitError(f"expression iterates more than {LIMITS.max_iterations} times "
                         "(ATHENA_EXPRESSION_MAX_ITERATIONS)")
    if before // _CLOCK_EVERY != budget.iterations // _CLOCK_EVERY:
        _check_clock(budget)


def check_size(size: int) -> None:
    """Before building a value of ``size`` characters/items: within one value's bound?"""
    if size > LIMITS.max_value_size:
        raise LimitError(f"a value would have {size} characters/items, more than "
                         f"{LIMITS.max_value_size} (ATHENA_EXPRESSION_MAX_VALUE_SIZE)")


def spend_size(size: int) -> None:
    """Account for a value of ``size`` characters/items that an expression built."""
    check_size(size)
    budget = _budget.get()
    if budget is None:
        return
    budget.built -= size
    if budget.built < 0:
        raise LimitError(f"expression builds more than {LIMITS.max_built} characters/items in total "
                         "(ATHENA_EXPRESSION_MAX_BUILT)")
    _check_clock(budget)


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable``, each item spending one iteration of the budget (every ``{% for %}``)."""
    budget = _budget.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.iterations -= 1
        if budget.iterations < 0:
            raise LimitError(f"expression iterates more than {LIMITS.max_iterations} times "
                             "(ATHENA_EXPRESSION_MAX_ITERATIONS)")
        if not budget.iterations % _CLOCK_EVERY:
            _check_clock(budget)
        yield item


def weight(value: Any, limit: int) -> int:
    """Characters/items ``value`` stands for (strings by length, containers by their items, shared
    ones once per reference, as serialising would count them); stops past ``limit``."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += len(item)
            stack.extend(item)
        else:
            total += 1
        if total > limit:
            return total
    return total


def check_weight(value: Any) -> Any:
    """``value``, if what it stands for is within one value's bound (else LimitError)."""
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        size = weight(value, LIMITS.max_value_size)
        if size > LIMITS.max_value_size:
            raise LimitError(f"a value stands for more than {LIMITS.max_value_size} characters/items "
                             "(ATHENA_EXPRESSION_MAX_VALUE_SIZE)")
    return value


def text_size(value: Any) -> int:
    return len(value) if isinstance(value, str) else weight(value, LIMITS.max_value_size) + 2
