from __future__ import annotations

from typing import Any

import pytest

from athena.engine import Evaluator, ExpressionError, NodeError, evaluate, is_truthy
from athena.engine.sandbox import MAX_RANGE

SCOPE: dict[str, Any] = {
    "trigger": {"user": "ada", "n": 3},
    "nodes": {"a": {"output": {"x": 1, "tags": ["p", "q"]}, "status": "success"}},
    "variables": {"greeting": "hello"},
    "execution": {"uuid": "abc", "mode": "manual"},
    "input": [1, 2, 3, 4],
}


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ 1 + 1 }}", 2),
    ("{{1+1}}", 2),
    ("{{   1.5 * 2   }}", 3.0),
    ("{{ nodes.a.output }}", {"x": 1, "tags": ["p", "q"]}),
    ("{{ nodes.a.output.tags }}", ["p", "q"]),
    ("{{ trigger.n > 2 }}", True),
    ("{{ none }}", None),
    ("{{ {'a': {'b': 1}} }}", {"a": {"b": 1}}),
    ("{{ input | select('even') }}", [2, 4]),
    ("{{ input | map('string') | list }}", ["1", "2", "3", "4"]),
    ("{{ range(3) }}", [0, 1, 2]),
    ("{{ nodes.a.output | tojson }}", '{"x": 1, "tags": ["p", "q"]}'),
    ("{{ '{\"k\": [1, 2]}' | fromjson }}", {"k": [1, 2]}),
    ("{{ execution.uuid }}", "abc"),
    ("{{ variables.greeting | upper }}", "HELLO"),
    ("{{ missing | default('dflt') }}", "dflt"),
])
def test_single_expression_keeps_type(source: str, expected: Any) -> None:
    assert evaluate(source, SCOPE) == expected
    assert type(evaluate(source, SCOPE)) is type(expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("Hi {{ trigger.user }}!", "Hi ada!"),
    ("{{ 1 }}{{ 2 }}", "12"),
    ("{{ 'a' }} and {{ 'b' }}", "a and b"),
    (" {{ 1 + 1 }}", " 2"),
    ("{% for i in input %}{{ i }},{% endfor %}", "1,2,3,4,"),
    ("line {{ trigger.n }}\n", "line 3\n"),
    ("no braces at all", "no braces at all"),
    ("single { brace }", "single { brace }"),
])
def test_templates_render_to_strings(source: str, expected: str) -> None:
    assert evaluate(source, SCOPE) == expected


def test_evaluate_walks_dicts_and_lists_without_touching_other_values() -> None:
    value = {"a": "{{ trigger.n }}", "b": ["x", "{{ trigger.user }}", 5, None],
             "c": {"d": "{{ nodes.a.output.x + 1 }}"}, "e": True}
    assert evaluate(value, SCOPE) == {"a": 3, "b": ["x", "ada", 5, None], "c": {"d": 2}, "e": True}
    assert value["a"] == "{{ trigger.n }}"  # input not mutated


def test_expression_results_are_not_re_evaluated() -> None:
    scope = {"input": {"text": "{{ 1 + 1 }}"}}
    assert evaluate("{{ input.text }}", scope) == "{{ 1 + 1 }}"


@pytest.mark.parametrize(("source", "reason"), [
    ("{{ nope }}", "'nope' is undefined"),
    ("{{ nodes.b.output }}", "no attribute 'b'"),
    ("{{ nodes.a.output.missing }}", "no attribute 'missing'"),
    ("{{ 1 + }}", "syntax error"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ("text {{ nope }}", "'nope' is undefined"),
])
def test_failures_raise_expression_error_naming_the_expression(source: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate(source, SCOPE)
    message = str(info.value)
    assert message.startswith(f"expression '{source}' failed: ")
    assert reason in message
    assert isinstance(info.value, NodeError)
    assert info.value.retryable is False


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ range(10**9) | list }}",
    "{{ range(MAX) | list }}".replace("MAX", str(MAX_RANGE + 1)),
    "{{ 'a' * 10**9 }}",
    "{{ 10**9 * 'a' }}",
    "{{ [1] * 10**8 }}",
    "{{ 2 ** (10**8) }}",
    "{{ 7 ** 10000000 }}",
    "{{ '%999999999s' % 'a' }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a'.center(10**9) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:>{}}'.format(1, 10**9) }}",
    "{{ 'a' | center(10**9) }}",
    "{{ 'x' | indent(10**9) }}",
    "{{ '%999999999s' | format('a') }}",
    "{{ ('a' * 1000000).replace('', 'bb') }}",
    "{{ 'aaaa' | replace('', 'b' * 1000000) }}",
    "{{ lipsum(10**9) }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
    "{{ {}.update({'a': 1}) }}",
    "{{ [].append(1) }}",
])
def test_sandbox_refuses_escapes_and_huge_allocations(source: str) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate(source, SCOPE)
    assert "failed:" in str(info.value)


def test_pow_is_left_associative_in_jinja_so_unparenthesised_form_is_small() -> None:
    # Jinja parses ``2 ** 10**8`` as ``(2 ** 10) ** 8``; it must stay cheap.
    assert evaluate("{{ 2 ** 10**8 }}", SCOPE) == 2 ** 80


def test_reasonable_sizes_still_work() -> None:
    assert evaluate("{{ 'ab' * 3 }}", SCOPE) == "ababab"
    assert evaluate("{{ 2 ** 100 }}", SCOPE) == 2 ** 100
    assert evaluate("{{ range(MAX) | list | length }}".replace("MAX", str(MAX_RANGE)), SCOPE) \
        == MAX_RANGE
    assert evaluate("{{ '%5s' % 'a' }}", SCOPE) == "    a"
    assert evaluate("{{ 'a'.ljust(3, '.') }}", SCOPE) == "a.."


def test_output_cap_is_configurable() -> None:
    small = Evaluator(max_output=10)
    assert small.evaluate("{{ 'x' * 9 }}!", {}) == "x" * 9 + "!"
    with pytest.raises(ExpressionError, match="exceeds 10 characters"):
        small.evaluate("{{ 'x' * 11 }} text", {})


def test_compiled_expressions_are_cached() -> None:
    evaluator = Evaluator(cache_size=8)
    for _ in range(5):
        assert evaluator.evaluate("{{ input + 1 }}", {"input": 1}) == 2
    info = evaluator.cache_info()
    assert info.misses == 1
    assert info.hits == 4
    for i in range(20):
        evaluator.evaluate("{{ %d }}" % i, {})
    assert evaluator.cache_info().currsize == 8


def test_check_reports_syntax_errors_only() -> None:
    evaluator = Evaluator()
    assert evaluator.check("{{ undefined_var }}") is None
    assert evaluator.check("plain") is None
    problem = evaluator.check("{{ 1 + }}")
    assert problem is not None and "syntax error" in problem


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (1, True), (0, False), (None, False), ([], False), ([0], True),
    ("", False), ("0", False), ("false", False), ("False", False), (" false ", False),
    ("true", True), ("no", True), ("1", True), ({}, False),
])
def test_is_truthy(value: Any, expected: bool) -> None:
    assert is_truthy(value) is expected
