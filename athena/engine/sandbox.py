"""A Jinja sandbox with resource bounds for user-written workflow expressions.

The stock ``ImmutableSandboxedEnvironment`` already refuses dunder attribute
access and mutation of builtin containers.  On top of that, one evaluation
budget, checked cooperatively inside the sandbox (no subprocess):

* every loop iteration counts, whatever it iterates (``{% for %}`` loops are
  rewritten to iterate through :func:`counted`), and so do ``range()`` items;
* every value an expression builds is bounded in size (``~``, ``+``, ``*``,
  ``%``, ``join``, ``list``, ``replace``, ``format``, ``tojson``, method calls;
  nested containers by their weight: what serialising them would cost), and so
  is the total it builds in one evaluation;
* a deadline (:func:`node_deadline`, set by the runner from the node's
  ``settings.timeout`` and the run's maximum duration) is checked as it goes,
  so a CPU-bound expression stops within about its timeout.

The budget itself is athena/engine/budget.py.
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any, Callable

from jinja2 import StrictUndefined, nodes, pass_eval_context
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from athena.engine.budget import (
    LIMITS,
    LimitError,
    check_size,
    check_weight,
    counted,
    spend_iterations,
    spend_size,
    text_size,
)

MAX_RANGE = 10_000  # items a single range() may produce
MAX_INT_BITS = 100_000  # ~30k decimal digits
MAX_WIDTH = 10_000  # padding width in format specs


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_RISK = re.compile(r"\{[^{}]*:[^{}]*(?:\d{5,}|\{)")
_SIZED = (str, bytes, list, tuple)
_BUILT = (str, bytes, list, tuple, dict, set, frozenset)
# Internal filter names the AST rewrite uses (not valid in user syntax: a filter name is an identifier).
_COUNTED = "athena.counted"
_CONCAT = "athena.concat"


def bounded_range(*args: int) -> range:
    rng = range(*args)
    try:
        size = len(rng)
    except OverflowError:
        size = MAX_RANGE + 1
    if size > MAX_RANGE:
        raise LimitError(f"range() is limited to {MAX_RANGE} items")
    spend_iterations(size)
    return rng


def _check_int_size(left: Any, right: Any, op: str) -> None:
    if op == "**":
        if abs(left) > 1 and right > 0 and left.bit_length() * right > MAX_INT_BITS:
            raise LimitError("result of '**' is too large")
    elif op == "*" and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise LimitError(f"result of '{op}' is too large")


def _check_repeat(seq: Any, times: Any) -> None:
    if isinstance(times, int) and times > 0:
        spend_size(len(seq) * times)


def _check_percent_format(fmt: str) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for part in match.groups():
            if part == "*" or (part and len(part) > 4 and int(part) > MAX_WIDTH):
                raise LimitError("format width too large")


def _check_str_method(target: str, name: str, args: tuple, kwargs: dict) -> None:
    """Before a str method runs: the size of what it would build (``call`` spends the result)."""
    if name in ("ljust", "rjust", "center", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int):
            check_size(width)
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            check_size(len(target) + target.count("\t") * size)
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str):
            hits = target.count(old) if old else len(target) + 1
            if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
                hits = min(hits, args[2])
            check_size(len(target) + hits * len(new))
    elif name == "join" and args and isinstance(args[0], (list, tuple)):
        parts = args[0]
        check_size(sum(len(part) for part in parts if isinstance(part, str))
                   + len(target) * max(len(parts) - 1, 0))


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
    result = text.replace(old, new, -1 if count is None else count)
    spend_size(len(result))
    return result


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise TypeError("can't handle positional and keyword arguments at the same time")
    text = str(value)
    _check_percent_format(text)
    check_size(len(text) + sum(text_size(arg) for arg in (*args, *kwargs.values())))
    result = text % (kwargs or args)
    spend_size(len(result))
    return result


def _tojson(value: Any, indent: int | None = None) -> str:
    parts: list[str] = []
    size = 0
    for chunk in json.JSONEncoder(indent=indent, ensure_ascii=False, default=str).iterencode(value):
        size += len(chunk)
        if size > LIMITS.max_value_size:
            spend_size(size)
        parts.append(chunk)
    spend_size(size)
    return "".join(parts)


def _concat(parts: list[Any]) -> str:
    """``a ~ b ~ c``: the joined text, within the bounds."""
    spend_size(sum(text_size(part) for part in parts))
    return "".join(part if isinstance(part, str) else str(part) for part in parts)


@pass_eval_context
def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(counted(value))
    if attribute is None:
        spend_size(sum(text_size(item) for item in items) + len(str(d)) * max(len(items) - 1, 0))
        return str(d).join(item if isinstance(item, str) else str(item) for item in items)
    result = FILTERS["join"](eval_ctx, items, d, attribute)
    spend_size(len(result))
    return result


def _list_filter(value: Any) -> list[Any]:
    if isinstance(value, str):
        spend_size(len(value))
        return list(value)
    result = list(counted(value))
    spend_size(len(result))
    return result


def _finalize(value: Any) -> Any:
    """Before a ``{{ }}`` is written out: a container is written as its text, so bound its weight."""
    return check_weight(value)


def _fromjson(value: Any) -> Any:
    return json.loads(value)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Immutable Jinja sandbox with strict undefined handling and the evaluation budget."""

    intercepted_binops = frozenset({"**", "*", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, cache_size=0,
                         keep_trailing_newline=True, finalize=_finalize)
        self.globals["range"] = bounded_range
        self.globals.pop("lipsum", None)
        for name, limit in (("center", LIMITS.max_value_size), ("indent", MAX_WIDTH),
                            ("truncate", LIMITS.max_value_size), ("wordwrap", LIMITS.max_value_size),
                            ("batch", MAX_RANGE), ("slice", MAX_RANGE)):
            self.filters[name] = _capped_filter(FILTERS[name], limit)
        self.filters["replace"] = _replace_filter
        self.filters["format"] = _format_filter
        self.filters["tojson"] = _tojson
        self.filters["fromjson"] = _fromjson
        self.filters["join"] = _join_filter
        self.filters["list"] = _list_filter
        self.filters[_COUNTED] = counted
        self.filters[_CONCAT] = _concat

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> Any:
        """Every ``{% for %}`` iterates through :func:`counted` and every ``~`` is :func:`_concat`
        (templates and expressions alike both come through here)."""
        for loop in source.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _COUNTED, [], [], None, None, lineno=loop.lineno)
        for concat in source.find_all(nodes.Concat):
            concat.nodes = [nodes.Filter(nodes.List(concat.nodes, lineno=concat.lineno), _CONCAT, [], [],
                                         None, None, lineno=concat.lineno)]
        return super()._generate(source, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        left_int = isinstance(left, int)
        right_int = isinstance(right, int)
        if left_int and right_int:
            _check_int_size(left, right, operator)
        elif operator == "+":
            if isinstance(left, _SIZED) and isinstance(right, _SIZED):
                spend_size(len(left) + len(right))
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
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, _BUILT) and result is not target:
            spend_size(len(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _FORMAT_RISK.search(value.__self__):

            def refused(*args: Any, **kwargs: Any) -> str:
                raise LimitError("format spec width too large or dynamic")

            return refused
        return wrapped
