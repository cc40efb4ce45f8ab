from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from athena.engine import NodeRegistry, NodeResult, NodeType, Suspend, registry

from ._engine_helpers import assert_finished, edge, execute, node

ENGINE_DIR = Path(__file__).resolve().parents[2] / "athena" / "engine"


def run_one(type_: str, trigger: Any = None, **parameters: Any) -> tuple[Any, Any]:
    """Run manual -> <node>; return (entry, final event)."""
    events, state = execute([node("t", "manual"), node("x", type_, **parameters)],
                            [edge("t", "x")], trigger_data=trigger)
    return state.entries["x"], events[-1]


@pytest.mark.parametrize(("trigger", "parameters", "expected"), [
    ({"a": 1}, {"fields": {"b": "{{ input.a + 1 }}"}}, {"b": 2}),
    ({"a": 1}, {"fields": {"b": 2}, "keep_input": True}, {"a": 1, "b": 2}),
    ({"a": 1}, {"fields": {"a": "new"}, "keep_input": True}, {"a": "new"}),
    ([1, 2], {"fields": {"n": "{{ input | length }}"}, "keep_input": True}, {"n": 2}),
    (None, {"fields": {"nested": {"list": ["{{ 1 }}", "x{{ 2 }}"]}}}, {"nested": {"list": [1, "x2"]}}),
    ({"keep": False}, {"fields": {"z": 0}, "keep_input": "{{ trigger.keep }}"}, {"z": 0}),
])
def test_set(trigger: Any, parameters: dict[str, Any], expected: Any) -> None:
    entry, _ = run_one("set", trigger, **parameters)
    assert entry["status"] == "success"
    assert entry["output"] == expected


@pytest.mark.parametrize(("condition", "handle"), [
    (True, "true"), (False, "false"), ("{{ trigger.n > 1 }}", "true"), ("{{ trigger.n > 5 }}", "false"),
    ("false", "false"), ("0", "false"), ("", "false"), ("yes", "true"), ("{{ trigger.s }}", "false"),
    ("{{ trigger.missing is defined }}", "false"), (None, "false"), ([1], "true"),
])
def test_if_truthiness(condition: Any, handle: str) -> None:
    trigger = {"n": 3, "s": "False"}
    entry, _ = run_one("if", trigger, condition=condition)
    assert entry["handle"] == handle
    assert entry["output"] == trigger  # passes its input through


def test_noop_and_triggers_pass_data_through() -> None:
    webhook_data = {"body": {"a": 1}, "query": {"q": "1"}, "headers": {"X": "y"}}
    events, state = execute([node("w", "webhook"), node("n", "noop")],
                            [edge("w", "n")], trigger_data=webhook_data)
    assert_finished(events)
    assert state.entries["w"]["output"] == webhook_data
    assert state.entries["n"]["output"] == webhook_data


@pytest.mark.parametrize(("parameters", "error"), [
    ({}, "Workflow stopped with an error"),
    ({"message": "Order {{ trigger.id }} rejected"}, "Order 42 rejected"),
    ({"message": "{{ trigger.id }}"}, "42"),
])
def test_stop_and_error(parameters: dict[str, Any], error: str) -> None:
    entry, final = run_one("stop_and_error", {"id": 42}, **parameters)
    assert entry["status"] == "error" and entry["error"] == error
    assert final.status == "failed" and final.error == f"node 'x': {error}"


@pytest.mark.parametrize(("items", "condition", "expected"), [
    ("{{ trigger.people }}", "{{ item.age >= 18 }}", [{"age": 30}, {"age": 18}]),
    ("{{ trigger.people }}", "{{ loop.index > 1 }}", [{"age": 10}, {"age": 18}]),
    ("{{ trigger.people }}", "{{ loop.first }}", [{"age": 30}]),
    ("{{ [1, 2, 3, 4] }}", "{{ item is even }}", [2, 4]),
    ([1, "0", 0, "x"], "{{ item }}", [1, "x"]),
    ("{{ [] }}", "{{ item }}", []),
])
def test_filter(items: Any, condition: Any, expected: list[Any]) -> None:
    trigger = {"people": [{"age": 30}, {"age": 10}, {"age": 18}]}
    entry, _ = run_one("filter", trigger, items=items, condition=condition)
    assert entry["status"] == "success", entry["error"]
    assert entry["output"] == expected


def test_filter_requires_a_list() -> None:
    entry, final = run_one("filter", {"n": 1}, items="{{ trigger.n }}", condition="{{ item }}")
    assert entry["status"] == "error"
    assert "items must evaluate to a list" in final.error and "'x'" in final.error


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"expression": "users[?age > `20`].name"}, ["ann"]),
    ({"expression": "length(users)"}, 2),
    ({"expression": "[0].x", "input": [{"x": 5}]}, 5),
    ({"expression": "a.b", "input": "{{ {'a': {'b': trigger.users[1].name}} }}"}, "bob"),
    ({"expression": "{{ 'users[0]' }}.name", "language": "jmespath"}, "ann"),
    ({"expression": "missing"}, None),
])
def test_transform(parameters: dict[str, Any], expected: Any) -> None:
    trigger = {"users": [{"name": "ann", "age": 30}, {"name": "bob", "age": 12}]}
    entry, _ = run_one("transform", trigger, **parameters)
    assert entry["status"] == "success", entry["error"]
    assert entry["output"] == expected


def test_transform_runtime_errors_fail_the_node() -> None:
    entry, final = run_one("transform", {"a": "text"}, expression="abs(a)")
    assert entry["status"] == "error" and "JMESPath" in entry["error"]
    assert final.error.startswith("node 'x': ")


def test_switch_output_handles_follow_cases() -> None:
    switch = registry.get("switch")
    assert switch is not None
    assert switch.output_handles({"cases": {"a": 1, "b": 2}}) == ["a", "b", "default"]
    assert switch.output_handles({"cases": "{{ x }}"}) == ["default"]
    assert registry.get("if").output_handles({}) == ["true", "false"]


def test_merge_first_mode_and_type_equality_in_switch() -> None:
    nodes = [node("t", "manual"), node("w", "switch", value="{{ trigger.n }}",
                                        cases={"one": 1, "two": "2"}),
             node("a", "set", fields={"via": "one"}), node("b", "set", fields={"via": "default"}),
             node("m", "merge", mode="first")]
    edges = [edge("t", "w"), edge("w", "a", "one"), edge("w", "b", "default"), edge("a", "m"),
             edge("b", "m")]
    events, state = execute(nodes, edges, trigger_data={"n": 2})
    assert_finished(events)
    assert state.entries["w"]["handle"] == "default"  # 2 != "2"
    assert state.entries["m"]["output"] == {"via": "default"}


def test_registry_register_rules() -> None:
    local = NodeRegistry()

    @local.register
    class Echo(NodeType):
        type = "echo"
        description = "echo"

        def run(self, ctx: Any) -> NodeResult:
            return NodeResult(ctx.input)

    assert isinstance(local.get("echo"), Echo)
    assert "echo" in local and len(local) == 1

    class Other(NodeType):
        type = "echo"

    with pytest.raises(ValueError, match="already registered"):
        local.register(Other)

    class Nameless(NodeType):
        pass

    with pytest.raises(ValueError, match="type"):
        local.register(Nameless)
    assert local.describe()[0]["parameters"] == {"type": "object", "properties": {},
                                                 "additionalProperties": False}


def test_suspend_status_is_checked() -> None:
    assert Suspend("paused").info == {}
    with pytest.raises(ValueError):
        Suspend("sleeping")


FORBIDDEN = {"flask", "redis", "rq", "sqlalchemy", "flask_sqlalchemy"}


def test_engine_does_not_import_web_or_storage_libraries() -> None:
    files = sorted(ENGINE_DIR.rglob("*.py"))
    assert len(files) > 10
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for item in ast.walk(tree):
            names: list[str] = []
            if isinstance(item, ast.Import):
                names = [alias.name for alias in item.names]
            elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
                names = [item.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
        text = path.read_text()
        offenders += [f"{path.name}: dynamic import of {lib}" for lib in FORBIDDEN
                      if f'import_module("{lib}' in text or f"import_module('{lib}" in text]
    assert offenders == []


def test_engine_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in ENGINE_DIR.rglob("*.py")}
    assert max(sizes.values()) <= 300, sizes
