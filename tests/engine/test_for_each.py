"""The for_each loop node: body shape, iteration scope, results, errors."""
from __future__ import annotations

from typing import Any

import pytest

from athena.engine import Graph, GraphValidationError, NodeFinished, RunFinished, registry

from ._engine_helpers import assert_finished, edge, execute, node, started
from ._for_each_helpers import EXPECTED, REG, iterations, loop_node, progress, two_node_body


# --- results, scope, events -----------------------------------------------------------------
def test_body_of_two_nodes_collects_results_in_order() -> None:
    nodes, edges = two_node_body()
    events, state = execute(nodes, edges, trigger_data={"list": [1, 2, 3, 4, 5]})
    final = assert_finished(events)
    assert started(events) == ["t", "each"] + ["a", "b"] * 5 + ["after"]
    assert iterations(events, "a") == iterations(events, "b") == [1, 2, 3, 4, 5]
    assert iterations(events, "each") == [None]
    entry = state.entries["each"]
    assert (entry["status"], entry["handle"], entry["output"]) == ("success", "done", EXPECTED)
    assert state.entries["after"]["output"] == {"got": EXPECTED}  # 'done' gets the results
    assert final.output == {"after": {"got": EXPECTED}}  # body nodes are not run outputs
    # Only the last iteration's entry per body node is kept.
    assert state.entries["b"]["output"] == EXPECTED[-1]
    assert list(state.entries) == ["t", "each", "a", "b", "after"]
    assert state.steps == 1 + 1 + 2 * 5 + 1
    assert [(p.index, p.processed, p.errors, p.length) for p in progress(events)] == [
        (i, i, 0, 5) for i in range(1, 6)]
    assert progress(events)[1].entry["output"] == {"results": EXPECTED[:2], "next_index": 2,
                                                   "errors": 0}
    assert progress(events)[0].to_dict() == {"kind": "node.progress", "node_id": "each",
                                             "index": 1, "length": 5, "processed": 1, "errors": 0}
    first_body = next(ev for ev in events if isinstance(ev, NodeFinished) and ev.node_id == "a")
    assert first_body.to_dict()["iteration"] == 1


@pytest.mark.parametrize(("expression", "expected"), [
    ("{{ loop.index }}", [1, 2, 3]),
    ("{{ loop.index0 }}", [0, 1, 2]),
    ("{{ loop.first }}", [True, False, False]),
    ("{{ loop.last }}", [False, False, True]),
    ("{{ loop.length }}", [3, 3, 3]),
    ("{{ item.name }}", ["x", "y", "z"]),
    ("{{ input.name }}", ["x", "y", "z"]),  # the body's first node gets the item as input
    ("{{ trigger.tag ~ item.name }}", ["#x", "#y", "#z"]),
])
def test_loop_and_item_are_in_scope(expression: str, expected: list[Any]) -> None:
    nodes = [node("t", "manual"), loop_node(), node("a", "set", fields={"x": expression})]
    events, state = execute(nodes, [edge("t", "each"), edge("each", "a", "item")],
                            trigger_data={"list": [{"name": n} for n in "xyz"], "tag": "#"})
    assert_finished(events)
    assert state.entries["each"]["output"] == [{"x": value} for value in expected]


@pytest.mark.parametrize("items", [[], "{{ [] }}"])
def test_empty_list_goes_straight_to_done(items: Any) -> None:
    nodes, edges = two_node_body()
    nodes[1] = loop_node(items=items)
    events, state = execute(nodes, edges, trigger_data={"list": []})
    final = assert_finished(events)
    assert started(events) == ["t", "each", "after"]
    assert state.entries["each"]["output"] == [] and final.output == {"after": {"got": []}}
    assert "a" not in state.entries and progress(events) == []


@pytest.mark.parametrize(("items", "kind"), [(7, "int"), ({"a": 1}, "dict"), ("abc", "str"),
                                             (None, "NoneType")])
def test_items_not_a_list_fails_naming_the_node(items: Any, kind: str) -> None:
    nodes, edges = two_node_body()
    events, state = execute(nodes, edges, trigger_data={"list": items})
    final = assert_finished(events, "failed")
    assert final.error == f"node 'each': items must evaluate to a list, got {kind}"
    assert state.entries["each"]["status"] == "error" and "a" not in state.entries


def test_nodes_scope_is_the_current_iteration_and_multiple_leaves_make_a_dict() -> None:
    nodes = [node("t", "manual"), loop_node(),
             node("c", "if", condition="{{ item % 2 == 0 }}"),
             node("even", "set", fields={"e": "{{ item }}"}),
             node("odd", "set", fields={"o": "{{ nodes.c.output }}"}),
             node("tag", "set", fields={"n": "{{ loop.index }}"}),
             node("after", "set", fields={"last_even": "{{ nodes.even.output }}"})]
    edges = [edge("t", "each"), edge("each", "c", "item"), edge("c", "even", "true"),
             edge("c", "odd", "false"), edge("each", "tag", "item"),
             edge("each", "after", "done")]
    events, state = execute(nodes, edges, trigger_data={"list": [1, 2, 3]})
    assert_finished(events)
    assert state.entries["each"]["output"] == [
        {"odd": {"o": 1}, "tag": {"n": 1}},
        {"even": {"e": 2}, "tag": {"n": 2}},
        {"odd": {"o": 3}, "tag": {"n": 3}},
    ]
    # per-iteration routing: 'even' is skipped in the last iteration, so its last entry is skipped
    assert state.entries["even"]["status"] == "skipped"
    assert state.entries["after"]["output"] == {"last_even": None}


def test_body_rejoining_the_done_path_carries_no_data() -> None:
    nodes = [node("t", "manual"), loop_node(), node("a", "set", fields={"v": "{{ item }}"}),
             node("join", "merge")]
    edges = [edge("t", "each"), edge("each", "a", "item"), edge("a", "join"),
             edge("each", "join", "done")]
    graph = Graph.parse(nodes, edges)
    assert graph.bodies == {"each": ["a"]} and graph.level(None) == ["t", "each", "join"]
    events, state = execute(nodes, edges, trigger_data={"list": [1, 2]})
    assert_finished(events)
    assert state.entries["join"]["output"] == {"each": [{"v": 1}, {"v": 2}]}


def test_nested_for_each() -> None:
    nodes = [node("t", "manual"), loop_node("outer"),
             loop_node("inner", items="{{ item.vals }}"),
             node("x", "set", fields={"v": "{{ item * 10 }}", "at": "{{ loop.parent.index }}."
                                      "{{ loop.index }}", "name": "{{ loop.parent.length }}"}),
             node("sum", "set", fields={"n": "{{ input | length }}"})]
    edges = [edge("t", "outer"), edge("outer", "inner", "item"), edge("inner", "x", "item"),
             edge("inner", "sum", "done")]
    graph = Graph.parse(nodes, edges)
    assert graph.bodies == {"outer": ["inner", "x", "sum"], "inner": ["x"]}
    assert graph.owner == {"t": None, "outer": None, "inner": "outer", "x": "inner",
                           "sum": "outer"}
    events, state = execute(nodes, edges,
                            trigger_data={"list": [{"vals": [1, 2]}, {"vals": [3]}]})
    assert_finished(events)
    assert state.entries["outer"]["output"] == [{"n": 2}, {"n": 1}]
    assert state.entries["inner"]["output"] == [{"v": 30, "at": "2.1", "name": 2}]
    assert started(events) == ["t", "outer", "inner", "x", "x", "sum", "inner", "x", "sum"]


# --- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("body_on_error", "loop_on_error", "run_status"), [
    ("stop", "stop", "failed"),
    ("continue", "stop", "completed"),
    ("stop", "continue", "completed"),
])
def test_body_errors(body_on_error: str, loop_on_error: str, run_status: str) -> None:
    nodes = [node("t", "manual"), loop_node(settings={"on_error": loop_on_error}),
             node("chk", "stop_and_error", message="bad {{ item }}",
                  settings={"on_error": body_on_error}),
             node("ok", "set", fields={"v": "{{ item }}"}),
             node("c", "if", condition="{{ item == 3 }}")]
    edges = [edge("t", "each"), edge("each", "c", "item"), edge("c", "chk", "true"),
             edge("c", "ok", "false")]
    if loop_on_error == "continue":
        nodes.append(node("handler", "set", fields={"caught": "{{ input.error }}"}))
        edges.append(edge("each", "handler", "error"))
    events, state = execute(nodes, edges, trigger_data={"list": [1, 2, 3, 4, 5]})
    final = assert_finished(events, run_status)
    entry = state.entries["each"]
    if body_on_error == "continue":
        assert entry["output"] == [{"v": 1}, {"v": 2}, {"error": "bad 3"}, {"v": 4}, {"v": 5}]
        assert progress(events)[-1].errors == 1
        return
    assert iterations(events, "c") == [1, 2, 3]  # nothing after the failing item
    assert entry["status"] == "error" and entry["error"] == "item 3: node 'chk': bad 3"
    if loop_on_error == "stop":
        assert final.error == "node 'each': item 3: node 'chk': bad 3"
    else:
        assert state.entries["handler"]["output"] == {"caught": "item 3: node 'chk': bad 3"}


def test_suspending_inside_a_body_is_an_error() -> None:
    nodes = [node("t", "manual"), loop_node(), node("p", "test_pause")]
    events, state = execute(nodes, [edge("t", "each"), edge("each", "p", "item")],
                            registry=REG, trigger_data={"list": [1]})
    final = assert_finished(events, "failed")
    assert final.error == ("node 'each': item 1: node 'p': a node cannot wait or pause inside "
                           "the body of loop node 'each'")


# --- graph shape ----------------------------------------------------------------------------
@pytest.mark.parametrize(("extra_nodes", "extra_edges", "message"), [
    ([node("side", "noop")], [edge("t", "side"), edge("side", "b")],
     "node 'b': it is in the body of loop node 'each' but edge"),
    ([], [edge("t", "b")], "node 'b': it is in the body of loop node 'each'"),
    ([], [edge("each", "after", "item")],
     "node 'after': reached from the 'item' output of loop node 'each' and also"),
])
def test_bad_loop_shapes_are_refused_naming_the_node(extra_nodes: list[dict[str, Any]],
                                                     extra_edges: list[dict[str, Any]],
                                                     message: str) -> None:
    nodes, edges = two_node_body()
    with pytest.raises(GraphValidationError) as caught:
        Graph.parse(nodes + extra_nodes, edges + extra_edges)
    assert any(message in text for text in caught.value.errors["edges"]), caught.value.errors


@pytest.mark.parametrize(("parameters", "key"), [
    ({"items": "{{ x }}", "concurrency": 0}, "nodes.each.parameters.concurrency"),
    ({"items": "{{ x }}", "concurrency": 17}, "nodes.each.parameters.concurrency"),
    ({"concurrency": 2}, "nodes.each.parameters.items"),
    ({"items": [], "extra": 1}, "nodes.each.parameters.extra"),
])
def test_bad_parameters_are_refused(parameters: dict[str, Any], key: str) -> None:
    with pytest.raises(GraphValidationError) as caught:
        Graph.parse([node("each", "for_each", **parameters)], [])
    assert key in caught.value.errors


def test_catalog_and_handles() -> None:
    described = {d["type"]: d for d in registry.describe()}["for_each"]
    assert described["handles"] == ["item", "done"]
    assert described["parameters"]["properties"]["concurrency"]["default"] == 1
    with pytest.raises(GraphValidationError) as caught:
        Graph.parse([loop_node(), node("x", "noop")], [edge("each", "x", "main")])
    assert "has no output handle 'main'" in str(caught.value)


def test_loop_without_body_returns_items_and_run_finished_output() -> None:
    events, state = execute([loop_node(items=[1, 2])], [])
    final = assert_finished(events)
    assert isinstance(final, RunFinished) and final.output == {"each": [1, 2]}
