"""Evaluation of ``{{ ... }}`` expressions embedded in node parameters.

* A string that is exactly one ``{{ expr }}`` evaluates to the expression's
  value with its Python type preserved (``"{{ 1 + 1 }}"`` -> ``2``).
* Any other string containing ``{{`` or ``{%`` is rendered as a template (str).
* Other strings are returned unchanged; dicts and lists are walked recursively.

Compiled expressions are cached (bounded LRU) per :class:`Evaluator`.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Callable

from jinja2 import TemplateSyntaxError, Undefined, UndefinedError
from jinja2.exceptions import SecurityError

from athena.engine.errors import ExpressionError
from athena.engine.budget import LIMITS, LimitError, end_budget, start_budget, weight
from athena.engine.sandbox import BoundedSandbox

__all__ = ["Evaluator", "ExpressionError", "contains_expression", "default_evaluator",
           "evaluate", "is_truthy"]

MAX_OUTPUT = 1_000_000  # characters of rendered template output
_SOURCE_PREVIEW = 200
_LISTIFY = (type(x for x in ()), map, filter, range, type({}.keys()), type({}.values()),
            type({}.items()), zip, reversed)
_FALSE_STRINGS = frozenset({"", "false", "0"})

Compiled = Callable[[Mapping[str, Any]], Any]


def contains_expression(value: Any) -> bool:
    """True if ``value`` is a string with ``{{`` or ``{%`` in it."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def is_truthy(value: Any) -> bool:
    """Truthiness for conditions: the strings "false", "0" and "" are false."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def _preview(source: str) -> str:
    return source if len(source) <= _SOURCE_PREVIEW else source[:_SOURCE_PREVIEW] + "..."


def _failure(source: str, reason: str) -> ExpressionError:
    return ExpressionError(f"expression '{_preview(source)}' failed: {reason}")


class Evaluator:
    """Compiles and evaluates expressions in a bounded Jinja sandbox."""

    def __init__(self, cache_size: int = 2048, max_output: int = MAX_OUTPUT) -> None:
        self.env = BoundedSandbox()
        self.max_output = max_output
        self._compile: Callable[[str], Compiled] = functools.lru_cache(maxsize=cache_size)(
            self._compile_uncached
        )

    # -- compilation -------------------------------------------------------
    def _compile_uncached(self, source: str) -> Compiled:
        if source.startswith("{{") and source.endswith("}}") and len(source) >= 4:
            try:
                expr = self.env.compile_expression(source[2:-2], undefined_to_none=False)
            except TemplateSyntaxError:
                expr = None  # e.g. "{{ a }} and {{ b }}": render as a template
            if expr is not None:
                return functools.partial(_run_expression, expr)
        template = self.env.from_string(source)
        return functools.partial(_render_template, template, self.max_output)

    def compile(self, source: str) -> Compiled:
        """Return the cached compiled form of ``source``; raise ExpressionError."""
        try:
            return self._compile(source)
        except TemplateSyntaxError as exc:
            raise _failure(source, f"syntax error: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - surface anything as an expression error
            raise _failure(source, f"{type(exc).__name__}: {exc}") from None

    def check(self, source: str) -> str | None:
        """Syntax-check an expression string; return an error message or None."""
        if not contains_expression(source):
            return None
        try:
            self.compile(source)
        except ExpressionError as exc:
            return str(exc)
        return None

    # -- evaluation --------------------------------------------------------
    def evaluate_string(self, source: str, scope: Mapping[str, Any]) -> Any:
        """Evaluate one string that contains an expression."""
        compiled = self.compile(source)
        token = start_budget()
        try:
            return compiled(scope)
        except UndefinedError as exc:
            raise _failure(source, exc.message or "undefined value") from None
        except (LimitError, SecurityError) as exc:
            raise _failure(source, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - user code may raise anything
            raise _failure(source, f"{type(exc).__name__}: {exc}") from None
        finally:
            end_budget(token)

    def evaluate(self, value: Any, scope: Mapping[str, Any]) -> Any:
        """Evaluate expressions in ``value`` (recursively for dicts/lists)."""
        if isinstance(value, str):
            if "{" not in value or ("{{" not in value and "{%" not in value):
                return value
            return self.evaluate_string(value, scope)
        if isinstance(value, dict):
            return {key: self.evaluate(item, scope) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.evaluate(item, scope) for item in value]
        return value

    def cache_info(self) -> Any:
        return self._compile.cache_info()  # type: ignore[attr-defined]


def _run_expression(expr: Any, scope: Mapping[str, Any]) -> Any:
    value = expr(scope)
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError with a useful message
        raise UndefinedError("undefined value")
    if isinstance(value, _LISTIFY):
        value = list(value)
    if isinstance(value, (dict, list, tuple)) and weight(value, LIMITS.max_built) > LIMITS.max_built:
        # what the run would store and send: a value made of shared parts can stand for far more
        # than it occupies ([x, x] doubled 40 times)
        raise LimitError(f"the value stands for more than {LIMITS.max_built} characters/items "
                         "(ATHENA_EXPRESSION_MAX_BUILT)")
    return value


def _render_template(template: Any, limit: int, scope: Mapping[str, Any]) -> str:
    context = template.new_context(scope)
    parts: list[str] = []
    size = 0
    for chunk in template.root_render_func(context):
        size += len(chunk)
        if size > limit:
            raise LimitError(f"rendered output exceeds {limit} characters")
        parts.append(chunk)
    return "".join(parts)


default_evaluator = Evaluator()


def evaluate(value: Any, scope: Mapping[str, Any]) -> Any:
    """Evaluate ``value`` with the module's default evaluator."""
    return default_evaluator.evaluate(value, scope)
