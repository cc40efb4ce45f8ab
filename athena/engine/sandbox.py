"""A Jinja sandbox with resource bounds for user-written workflow expressions.

The stock ``ImmutableSandboxedEnvironment`` already refuses dunder attribute
access and mutation of builtin containers.  On top of that this module bounds
the obvious ways to make the process allocate or spin: ``range``, ``**``,
sequence/str multiplication, ``%``-formatting widths, padding methods and
filters, and the total number of ``range`` items per evaluation.
"""
from __future__ import annotations

import functools
import json
import re
from contextvars import ContextVar
from typing import Any, Callable

from jinja2 import StrictUndefined
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RANGE = 10_000  # items a single range() may produce
MAX_RANGE_BUDGET = 100_000  # range() items per evaluation (nested loops)
MAX_SIZE = 1_000_000  # chars/items of a str/list produced by one operation
MAX_INT_BITS = 100_000  # ~30k decimal digits
MAX_WIDTH = 10_000  # padding width in format specs

_range_budget: ContextVar[list[int] | None] = ContextVar("athena_range_budget", default=None)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_RISK = re.compile(r"\{[^{}]*:[^{}]*(?:\d{5,}|\{)")
_SIZED = (str, bytes, list, tuple)


class LimitError(Exception):
    """An expression exceeded a safety bound."""


def start_budget() -> Any:
    """Begin a fresh range budget for one evaluation; returns a reset token."""
    return _range_budget.set([MAX_RANGE_BUDGET])


def end_budget(token: Any) -> None:
    _range_budget.reset(token)


def bounded_range(*args: int) -> range:
    rng = range(*args)
    try:
        size = len(rng)
    except OverflowError:
        size = MAX_RANGE + 1
    if size > MAX_RANGE:
        raise LimitError(f"range() is limited to {MAX_RANGE} items")
    budget = _range_budget.get()
    if budget is not None:
        budget[0] -= size
        if budget[0] < 0:
            raise LimitError(f"expression iterates more than {MAX_RANGE_BUDGET} range items")
    return rng


def _check_int_size(left: Any, right: Any, op: str) -> None:
    if op == "**":
        if abs(left) > 1 and right > 0 and left.bit_length() * right > MAX_INT_BITS:
            raise LimitError("result of '**' is too large")
    elif op == "*" and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise LimitError(f"result of '{op}' is too large")


def _check_repeat(seq: Any, times: Any) -> None:
    if isinstance(times, int) and times > 0 and len(seq) * times > MAX_SIZE:
        raise LimitError(f"sequence repetition would exceed {MAX_SIZE} items")


def _check_percent_format(fmt: str) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for part in match.groups():
            if part == "*" or (part and len(part) > 4 and int(part) > MAX_WIDTH):
                raise LimitError("format width too large")


def _check_str_method(target: str, name: str, args: tuple, kwargs: dict) -> None:
    if name in ("ljust", "rjust", "center", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int) and width > MAX_SIZE:
            raise LimitError(f"{name}() width too large")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int) and target.count("\t") * size > MAX_SIZE:
            raise LimitError("expandtabs() result too large")
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str):
            hits = target.count(old) if old else len(target) + 1
            if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
                hits = min(hits, args[2])
            if len(target) + hits * len(new) > MAX_SIZE:
                raise LimitError("replace() result too large")
    elif name == "join" and args and hasattr(args[0], "__len__"):
        if len(target) * len(args[0]) > MAX_SIZE:
            raise LimitError("join() result too large")


def _capped_filter(func: Callable[..., Any], limit: int) -> Callable[..., Any]:
    skip = 2 if getattr(func, "jinja_pass_arg", None) is not None else 1

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args[skip:], *kwargs.values()):
            if isinstance(arg, int) and arg > limit:
                raise LimitError(f"argument {arg} too large (max {limit})")
        return func(*args, **kwargs)

    return wrapper


def _replace_filter(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    _check_str_method(text, "replace", (old, new) + ((count,) if count is not None else ()), {})
    return text.replace(old, new, -1 if count is None else count)


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise TypeError("can't handle positional and keyword arguments at the same time")
    text = str(value)
    _check_percent_format(text)
    return text % (kwargs or args)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def _fromjson(value: Any) -> Any:
    return json.loads(value)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Immutable Jinja sandbox with strict undefined handling and size caps."""

    intercepted_binops = frozenset({"**", "*", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, cache_size=0,
                         keep_trailing_newline=True)
        self.globals["range"] = bounded_range
        self.globals.pop("lipsum", None)
        for name, limit in (("center", MAX_SIZE), ("indent", MAX_WIDTH), ("truncate", MAX_SIZE),
                            ("wordwrap", MAX_SIZE), ("batch", MAX_RANGE), ("slice", MAX_RANGE)):
            self.filters[name] = _capped_filter(FILTERS[name], limit)
        self.filters["replace"] = _replace_filter
        self.filters["format"] = _format_filter
        self.filters["tojson"] = _tojson
        self.filters["fromjson"] = _fromjson

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        left_int = isinstance(left, int)
        right_int = isinstance(right, int)
        if left_int and right_int:
            _check_int_size(left, right, operator)
        elif operator == "*":
            if isinstance(left, _SIZED) and right_int:
                _check_repeat(left, right)
            elif isinstance(right, _SIZED) and left_int:
                _check_repeat(right, left)
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        target = getattr(__obj, "__self__", None)
        if isinstance(target, str):
            _check_str_method(target, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _FORMAT_RISK.search(value.__self__):

            def refused(*args: Any, **kwargs: Any) -> str:
                raise LimitError("format spec width too large or dynamic")

            return refused
        return wrapped
