from __future__ import annotations

from typing import Any

import pytest

from athena.engine import Graph, GraphValidationError, registry, validate_graph

from ._engine_helpers import edge, node


def errors_of(nodes: Any, edges: Any) -> dict[str, list[str]]:
    with pytest.raises(GraphValidationError) as info:
        Graph.parse(nodes, edges)
    exc = info.value
    first = next(iter(exc.errors.values()))[0]
    assert str(exc) == first
    return exc.errors


TRIGGER = node("t", "manual")

# (case id, nodes, edges, expected error key, substrings the message must contain)
INVALID: list[tuple[str, Any, Any, str, tuple[str, ...]]] = [
    ("nodes not list", {"a": 1}, [], "nodes", ("nodes must be a list",)),
    ("edges not list", [TRIGGER], "x", "edges", ("edges must be a list",)),
    ("node not object", [TRIGGER, "oops"], [], "nodes", ("nodes[1]", "object")),
    ("node id missing", [{"type": "noop"}], [], "nodes", ("nodes[0]", "id")),
    ("node id empty", [{"id": "", "type": "noop"}], [], "nodes", ("nodes[0]", "id")),
    ("node id not string", [{"id": 5, "type": "noop"}], [], "nodes", ("nodes[0]", "id")),
    ("duplicate node id", [TRIGGER, node("t", "noop")], [], "nodes", ("'t'", "duplicate")),
    ("unknown type", [node("x", "teleport")], [], "nodes", ("'x'", "unknown node type", "teleport")),
    ("missing type", [{"id": "x"}], [], "nodes", ("'x'", "unknown node type")),
    ("parameters not object", [{"id": "x", "type": "noop", "parameters": [1]}], [],
     "nodes.x.parameters", ("'x'", "parameters must be an object")),
    ("unknown parameter", [node("x", "noop", extra=1)], [], "nodes.x.parameters.extra",
     ("'x'", "extra", "Unknown field")),
    ("unknown parameter even as expression", [node("x", "noop", extra="{{ 1 }}")], [],
     "nodes.x.parameters.extra", ("'x'", "Unknown field")),
    ("if without condition", [node("c", "if")], [], "nodes.c.parameters.condition",
     ("'c'", "condition", "required")),
    ("set fields not dict", [node("s", "set", fields=[1, 2])], [], "nodes.s.parameters.fields",
     ("'s'", "fields")),
    ("set keep_input bad", [node("s", "set", fields={}, keep_input="maybe")], [],
     "nodes.s.parameters.keep_input", ("'s'", "keep_input")),
    ("merge bad mode", [node("m", "merge", mode="some")], [], "nodes.m.parameters.mode",
     ("'m'", "mode")),
    ("transform jsonata", [node("x", "transform", expression="a", language="jsonata")], [],
     "nodes.x.parameters.language", ("'x'", "not supported")),
    ("transform bad jmespath", [node("x", "transform", expression="a[")], [],
     "nodes.x.parameters.expression", ("'x'", "JMESPath")),
    ("switch reserved case", [node("w", "switch", value=1, cases={"default": 1})], [],
     "nodes.w.parameters.cases", ("'w'", "default")),
    ("expression syntax", [node("s", "set", fields={"a": "{{ 1 + }}"})], [],
     "nodes.s.parameters.fields.a", ("'s'", "{{ 1 + }}", "syntax error")),
    ("settings not object", [{"id": "x", "type": "noop", "settings": 3}], [],
     "nodes.x.settings", ("'x'", "settings")),
    ("timeout zero", [node("x", "noop", settings={"timeout": 0})], [],
     "nodes.x.settings.timeout", ("'x'", "timeout", "positive")),
    ("timeout string", [node("x", "noop", settings={"timeout": "30"})], [],
     "nodes.x.settings.timeout", ("'x'", "timeout")),
    ("max_attempts 0", [node("x", "noop", settings={"retry": {"max_attempts": 0}})], [],
     "nodes.x.settings.retry.max_attempts", ("'x'", "max_attempts")),
    ("max_attempts 11", [node("x", "noop", settings={"retry": {"max_attempts": 11}})], [],
     "nodes.x.settings.retry.max_attempts", ("'x'", "between 1 and 10")),
    ("backoff negative", [node("x", "noop", settings={"retry": {"backoff": -1}})], [],
     "nodes.x.settings.retry.backoff", ("'x'", "backoff")),
    ("retry not object", [node("x", "noop", settings={"retry": 3})], [],
     "nodes.x.settings.retry", ("'x'", "retry")),
    ("on_error bad", [node("x", "noop", settings={"on_error": "explode"})], [],
     "nodes.x.settings.on_error", ("'x'", "on_error", "stop, continue")),
    ("edge not object", [TRIGGER], [5], "edges", ("edges[0]", "object")),
    ("edge source missing", [TRIGGER], [{"id": "e7", "target": "t"}], "edges",
     ("'e7'", "source is required")),
    ("edge target missing", [TRIGGER], [{"id": "e7", "source": "t"}], "edges",
     ("'e7'", "target is required")),
    ("edge unknown source", [TRIGGER, node("a", "noop")], [edge("zz", "a", edge_id="e1")], "edges",
     ("'e1'", "unknown source node 'zz'")),
    ("edge unknown target", [TRIGGER], [edge("t", "zz", edge_id="e1")], "edges",
     ("'e1'", "unknown target node 'zz'")),
    ("generated edge id", [TRIGGER], [edge("t", "t1"), edge("t", "zz")], "edges", ("'e0'",)),
    ("bad source handle", [TRIGGER, node("a", "noop")], [edge("t", "a", "true", edge_id="e1")],
     "edges", ("'e1'", "'t'", "no output handle 'true'")),
    ("if has no main handle", [TRIGGER, node("c", "if", condition=True), node("a", "noop")],
     [edge("t", "c"), edge("c", "a", edge_id="e2")], "edges", ("'e2'", "'c'", "'main'")),
    ("error handle needs continue", [TRIGGER, node("a", "noop")],
     [edge("t", "a", "error", edge_id="e1")], "edges", ("'e1'", "'error'")),
    ("switch unknown case", [TRIGGER, node("w", "switch", value=1, cases={"one": 1}),
                             node("a", "noop")],
     [edge("t", "w"), edge("w", "a", "two", edge_id="e2")], "edges", ("'e2'", "'two'")),
    ("duplicate edge id", [TRIGGER, node("a", "noop"), node("b", "noop")],
     [edge("t", "a", edge_id="x"), edge("t", "b", edge_id="x")], "edges", ("'x'", "duplicate")),
    ("edge into trigger", [TRIGGER, node("a", "noop")],
     [edge("t", "a"), edge("a", "t", edge_id="back")], "edges", ("'back'", "trigger", "'t'")),
    ("cycle", [TRIGGER, node("a", "noop"), node("b", "noop"), node("c", "noop")],
     [edge("t", "a"), edge("a", "b"), edge("b", "c"), edge("c", "a")], "edges",
     ("cycle", "a -> b -> c -> a")),
    ("self loop", [node("a", "noop")], [edge("a", "a")], "edges", ("cycle", "a -> a")),
]


@pytest.mark.parametrize(("nodes", "edges", "key", "parts"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_graphs_report_located_errors(nodes: Any, edges: Any, key: str,
                                              parts: tuple[str, ...]) -> None:
    errors = errors_of(nodes, edges)
    assert key in errors, errors
    assert any(all(part in message for part in parts) for message in errors[key]), errors[key]


def test_all_problems_are_collected() -> None:
    errors = errors_of(
        [node("a", "teleport"), node("b", "if"), node("b", "noop")],
        [edge("a", "nowhere", edge_id="e1")],
    )
    assert "node 'a': unknown node type 'teleport'" in errors["nodes"]
    assert "node 'b': duplicate node id" in errors["nodes"]
    assert any("'b'" in m for m in errors["nodes.b.parameters.condition"])
    assert errors["edges"] == ["edge 'e1': unknown target node 'nowhere'"]


@pytest.mark.parametrize("parameters", [
    {"fields": "{{ trigger }}"},
    {"fields": {"a": "{{ trigger.a }}"}, "keep_input": "{{ trigger.keep }}"},
])
def test_expressions_are_accepted_where_a_type_is_expected(parameters: dict[str, Any]) -> None:
    graph = Graph.parse([TRIGGER, node("s", "set", **parameters)], [edge("t", "s")])
    assert graph.nodes["s"]["parameters"] == parameters


@pytest.mark.parametrize(("type_", "parameters"), [
    ("merge", {"mode": "{{ variables.mode }}"}),
    ("transform", {"expression": "{{ variables.path }}", "language": "{{ variables.lang }}"}),
    ("switch", {"value": "{{ input.kind }}", "cases": "{{ variables.cases }}"}),
    ("if", {"condition": "{{ input.ok }}"}),
    ("filter", {"items": "{{ input }}", "condition": "{{ item > loop.index }}"}),
])
def test_expression_values_pass_validation(type_: str, parameters: dict[str, Any]) -> None:
    Graph.parse([node("x", type_, **parameters)], [])


def test_graph_structure_and_defaults() -> None:
    nodes = [
        node("b", "noop"),
        {"id": "t", "type": "manual", "name": "Start", "position": {"x": 1, "y": 2}},
        node("a", "noop", settings={"timeout": 5, "retry": {"max_attempts": 3, "backoff": 1.5},
                                    "on_error": "continue"}),
        node("c", "noop"),
    ]
    edges = [{"source": "t", "target": "a"}, {"id": "x", "source": "t", "target": "b"},
             {"source": "a", "target": "c"}, {"source": "b", "target": "c"},
             {"source": "a", "target": "b", "source_handle": "error"}]
    graph = validate_graph(nodes, edges)
    assert list(graph.nodes) == ["b", "t", "a", "c"]
    assert graph.nodes["b"]["name"] == "b" and graph.nodes["t"]["name"] == "Start"
    assert [e["id"] for e in graph.edges] == ["e0", "x", "e2", "e3", "e4"]
    assert graph.edges[0]["source_handle"] == "main" and graph.edges[0]["target_handle"] == "main"
    assert graph.roots == ["t"]
    assert [e["id"] for e in graph.incoming["c"]] == ["e2", "e3"]
    assert [e["id"] for e in graph.outgoing["t"]] == ["e0", "x"]
    assert graph.order == ["t", "a", "b", "c"]
    settings = graph.settings["a"]
    assert (settings.timeout, settings.max_attempts, settings.backoff, settings.on_error) == (
        5.0, 3, 1.5, "continue")
    assert graph.settings["b"].max_attempts == 1 and graph.settings["b"].on_error == "stop"
    assert graph.node_types["t"].is_trigger


def test_topological_order_breaks_ties_by_definition_order() -> None:
    nodes = [node(n, "noop") for n in ["z", "y", "x", "w"]]
    graph = Graph.parse(nodes, [edge("y", "w"), edge("z", "w")])
    assert graph.roots == ["z", "y", "x"]
    assert graph.order == ["z", "y", "x", "w"]


def test_empty_graph_is_valid() -> None:
    graph = Graph.parse([], [])
    assert graph.nodes == {} and graph.order == [] and graph.roots == []
    assert Graph.parse([], None).edges == []


def test_registry_describe_lists_builtin_types_with_json_schema() -> None:
    described = {d["type"]: d for d in registry.describe()}
    expected = {"manual", "webhook", "set", "if", "noop", "stop_and_error", "switch", "merge",
                "filter", "transform"}
    assert expected <= set(described)
    assert described["manual"]["is_trigger"] is True
    assert described["webhook"]["is_trigger"] is True
    assert described["if"]["handles"] == ["true", "false"]
    set_schema = described["set"]["parameters"]
    assert set_schema["type"] == "object"
    assert set_schema["required"] == ["fields"]
    assert set_schema["additionalProperties"] is False
    assert set_schema["properties"]["fields"]["type"] == "object"
    assert set_schema["properties"]["keep_input"] == {
        "type": "boolean", "default": False,
        "description": "Merge the fields over the input dict."}
    assert described["merge"]["parameters"]["properties"]["mode"]["enum"] == ["all", "first"]
    assert described["transform"]["parameters"]["properties"]["language"]["enum"] == ["jmespath"]
    assert registry.get("if") is registry.get("if")
    assert registry.get("nope") is None
    assert {t.type for t in registry.types()} >= expected
