"""The engine runner (``run_graph``) on whole graphs: data passing, branching and skipping,
merges, expression and node errors, ``on_error``, retries with back-off, the final output and
the event dicts. Stopping, limits, suspend/resume and handoff: test_engine_stop_resume.py."""
from __future__ import annotations

import re
from typing import Any

import pytest

from athena.engine import (
    Graph, NodeContext, NodeFinished, NodeStarted, RunContext, RunFinished, RunState, final_output,
    registry, run_graph,
)

from ._engine_helpers import assert_finished, edge, execute, finished, node, started, statuses
from ._runner_node_types import TEST_REGISTRY

ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


def test_test_types_do_not_leak_into_global_registry() -> None:
    assert registry.get("test_flaky") is None
    assert TEST_REGISTRY.get("test_flaky") is not None
    assert TEST_REGISTRY.get("set") is registry.get("set")


# --- basic flows ---------------------------------------------------------------------------
def test_linear_chain_passes_data_and_records_entries() -> None:
    nodes = [node("t", "manual"),
             node("a", "set", fields={"n": "{{ input.n + 1 }}", "who": "{{ trigger.who }}"}),
             node("b", "set", fields={"n": "{{ input.n * 10 }}", "prev": "{{ nodes.a.status }}"},
                  keep_input=True)]
    events, state = execute(nodes, [edge("t", "a"), edge("a", "b")],
                            trigger_data={"n": 1, "who": "ada"})
    final = assert_finished(events)
    assert started(events) == ["t", "a", "b"]
    assert [ev.kind for ev in events] == ["node.started", "node.finished"] * 3 + [
        "execution.finished"]
    assert state.entries["a"]["output"] == {"n": 2, "who": "ada"}
    assert state.entries["b"]["output"] == {"n": 20, "who": "ada", "prev": "success"}
    assert final.output == {"b": {"n": 20, "who": "ada", "prev": "success"}}
    assert final.error is None
    assert state.steps == 3
    entry = state.entries["b"]
    assert set(entry) == {"node_id", "type", "status", "output", "error", "handle", "started_at",
                          "stopped_at", "attempts"}
    assert (entry["status"], entry["handle"], entry["attempts"], entry["type"]) == (
        "success", "main", 1, "set")
    assert entry["started_at"] <= entry["stopped_at"]
    assert re.match(ISO_RE, entry["started_at"]) and re.match(ISO_RE, entry["stopped_at"])
    assert [e["node_id"] for e in state.to_entries()] == ["t", "a", "b"]


@pytest.mark.parametrize(("vip", "ran", "skipped", "join_input"), [
    (True, ["t", "c", "yes", "join", "after"], ["no"], {"branch": "yes"}),
    (False, ["t", "c", "no", "join", "after"], ["yes"], {"branch": "no"}),
])
def test_if_branch_taken_and_skip_propagation_through_join(
        vip: bool, ran: list[str], skipped: list[str], join_input: dict[str, Any]) -> None:
    nodes = [node("t", "manual"), node("c", "if", condition="{{ trigger.vip }}"),
             node("yes", "set", fields={"branch": "yes"}), node("no", "set", fields={"branch": "no"}),
             node("join", "merge", mode="first"), node("after", "noop")]
    edges = [edge("t", "c"), edge("c", "yes", "true"), edge("c", "no", "false"),
             edge("yes", "join"), edge("no", "join"), edge("join", "after")]
    events, state = execute(nodes, edges, trigger_data={"vip": vip})
    final = assert_finished(events)
    assert started(events) == ran
    assert [n for n, s in statuses(state).items() if s == "skipped"] == skipped
    assert state.entries["c"]["handle"] == ("true" if vip else "false")
    assert state.entries["join"]["output"] == join_input
    assert final.output == {"after": join_input}
    skipped_entry = finished(events)[skipped[0]]
    assert skipped_entry["output"] is None and skipped_entry["attempts"] == 0


def test_skipping_propagates_down_a_whole_branch() -> None:
    nodes = [node("t", "manual"), node("c", "if", condition=False),
             node("a", "noop"), node("b", "noop"), node("d", "noop")]
    edges = [edge("t", "c"), edge("c", "a", "true"), edge("a", "b"), edge("b", "d")]
    events, state = execute(nodes, edges)
    assert_finished(events)
    assert statuses(state) == {"t": "success", "c": "success", "a": "skipped", "b": "skipped",
                               "d": "skipped"}
    assert started(events) == ["t", "c"]
    assert final_output(Graph.parse(nodes, edges), state) == {"c": None}


def test_several_roots_run_in_definition_order() -> None:
    nodes = [node("r2", "set", fields={"v": 2}), node("r1", "set", fields={"v": 1}),
             node("m", "merge"), node("lonely", "set", fields={"v": "{{ input.x }}"})]
    events, state = execute(nodes, [edge("r1", "m"), edge("r2", "m")], trigger_data={"x": 9})
    final = assert_finished(events)
    assert started(events) == ["r2", "r1", "m", "lonely"]  # Kahn, ties by definition order
    assert state.entries["m"]["output"] == {"r1": {"v": 1}, "r2": {"v": 2}}
    assert state.entries["lonely"]["output"] == {"v": 9}  # non-trigger roots get trigger data
    assert final.output == {"lonely": {"v": 9}, "m": {"r1": {"v": 1}, "r2": {"v": 2}}}


@pytest.mark.parametrize(("kind", "handle"), [("a", "is_a"), ("b", "is_b"), ("zzz", "default"),
                                              (None, "default")])
def test_switch_routes_to_case_or_default(kind: Any, handle: str) -> None:
    nodes = [node("t", "manual"),
             node("w", "switch", value="{{ trigger.kind }}", cases={"is_a": "a", "is_b": "b"}),
             node("A", "noop"), node("B", "noop"), node("D", "noop")]
    edges = [edge("t", "w"), edge("w", "A", "is_a"), edge("w", "B", "is_b"),
             edge("w", "D", "default")]
    events, state = execute(nodes, edges, trigger_data={"kind": kind})
    final = assert_finished(events)
    target = {"is_a": "A", "is_b": "B", "default": "D"}[handle]
    assert state.entries["w"]["handle"] == handle
    assert final.output == {target: {"kind": kind}}
    assert sorted(n for n, s in statuses(state).items() if s == "skipped") == sorted(
        {"A", "B", "D"} - {target})


def test_merge_all_waits_for_every_branch_and_keys_by_source() -> None:
    nodes = [node("t", "manual"), node("a", "set", fields={"a": 1}),
             node("b", "set", fields={"b": 2}), node("m", "merge", mode="all")]
    events, state = execute(nodes, [edge("t", "a"), edge("t", "b"), edge("a", "m"), edge("b", "m")])
    assert_finished(events)
    assert started(events) == ["t", "a", "b", "m"]
    assert state.entries["m"]["output"] == {"a": {"a": 1}, "b": {"b": 2}}


def test_node_with_two_active_inputs_gets_dict_input() -> None:
    nodes = [node("t", "manual"), node("a", "set", fields={"a": 1}),
             node("b", "set", fields={"b": 2}), node("r", "test_recorder")]
    services: dict[str, Any] = {}
    events, _ = execute(nodes, [edge("t", "a"), edge("t", "b"), edge("a", "r"), edge("b", "r")],
                        registry=TEST_REGISTRY, services=services, trigger_data={"x": 1},
                        execution={"uuid": "u1"}, variables={"v": 1})
    assert_finished(events)
    seen: NodeContext = services["seen"]["r"]
    assert seen.input == {"a": {"a": 1}, "b": {"b": 2}}
    assert seen.inputs == {"a": {"a": 1}, "b": {"b": 2}}
    assert seen.scope["trigger"] == {"x": 1}
    assert seen.scope["execution"] == {"uuid": "u1"}
    assert seen.scope["variables"] == {"v": 1}
    assert seen.scope["nodes"]["a"] == {"output": {"a": 1}, "status": "success"}
    assert "env" not in seen.scope
    assert seen.resume is None and seen.timeout is None


def test_empty_graph_completes_immediately() -> None:
    events, state = execute([], [])
    assert events == [RunFinished("completed", {}, None)]
    assert state.entries == {}


# --- expressions and errors ----------------------------------------------------------------
def test_expression_failure_fails_node_naming_node_and_expression() -> None:
    nodes = [node("t", "manual"), node("calc", "set", fields={"x": "{{ nodes.nope.output }}"}),
             node("after", "noop")]
    events, state = execute(nodes, [edge("t", "calc"), edge("calc", "after")])
    final = assert_finished(events, "failed")
    assert final.error.startswith("node 'calc': expression '{{ nodes.nope.output }}' failed:")
    assert "nope" in final.error
    assert state.entries["calc"]["status"] == "error"
    assert state.entries["calc"]["error"].startswith("expression '{{ nodes.nope.output }}'")
    assert "after" not in state.entries
    assert started(events) == ["t", "calc"]


def test_invalid_evaluated_parameters_fail_the_node() -> None:
    nodes = [node("t", "manual"), node("m", "merge", mode="{{ trigger.mode }}")]
    events, state = execute(nodes, [edge("t", "m")], trigger_data={"mode": "sideways"})
    final = assert_finished(events, "failed")
    assert final.error.startswith("node 'm': invalid parameters for node 'm'")
    assert "mode" in final.error


@pytest.mark.parametrize(("on_error", "run_status", "downstream"), [
    ("stop", "failed", {}),
    ("continue", "completed", {"handler": "success", "normal": "skipped"}),
])
def test_on_error_stop_vs_continue(on_error: str, run_status: str,
                                   downstream: dict[str, str]) -> None:
    nodes = [node("t", "manual"),
             node("bad", "stop_and_error", message="bad {{ trigger.id }}",
                  settings={"on_error": on_error}),
             node("normal", "noop"), node("handler", "noop")]
    edges = [edge("t", "bad"), edge("bad", "normal")]
    if on_error == "continue":
        edges.append(edge("bad", "handler", "error"))
    events, state = execute(nodes, edges, trigger_data={"id": 7})
    final = assert_finished(events, run_status)
    entry = state.entries["bad"]
    assert entry["status"] == "error" and entry["error"] == "bad 7"
    if on_error == "stop":
        assert final.error == "node 'bad': bad 7"
        assert entry["handle"] is None and entry["output"] is None
        assert set(state.entries) == {"t", "bad"}
    else:
        assert final.error is None
        assert entry["handle"] == "error" and entry["output"] == {"error": "bad 7"}
        assert state.entries["handler"]["output"] == {"error": "bad 7"}
        assert final.output == {"handler": {"error": "bad 7"}}
    assert {n: state.entries[n]["status"] for n in downstream} == downstream


def test_unexpected_exception_becomes_node_error() -> None:
    nodes = [node("t", "manual"), node("x", "test_buggy")]
    events, state = execute(nodes, [edge("t", "x")], registry=TEST_REGISTRY, trigger_data=None)
    final = assert_finished(events, "failed")
    assert final.error == "node 'x': TypeError: 'NoneType' object is not subscriptable"
    assert state.entries["x"]["error"] == "TypeError: 'NoneType' object is not subscriptable"


@pytest.mark.parametrize(("fail_times", "max_attempts", "status", "attempts", "sleeps"), [
    (0, 3, "success", 1, []),
    (2, 3, "success", 3, [2.0, 4.0]),
    (3, 3, "error", 3, [2.0, 4.0]),
    (5, 4, "error", 4, [2.0, 4.0, 8.0]),
])
def test_retry_counts_attempts_and_backs_off(fail_times: int, max_attempts: int, status: str,
                                            attempts: int, sleeps: list[float]) -> None:
    slept: list[float] = []
    services: dict[str, Any] = {"fail_times": fail_times}
    nodes = [node("t", "manual"),
             node("f", "test_flaky", settings={"retry": {"max_attempts": max_attempts,
                                                          "backoff": 2}})]
    events, state = execute(nodes, [edge("t", "f")], registry=TEST_REGISTRY, services=services,
                            sleep=slept.append)
    assert slept == sleeps
    assert services["calls"] == list(range(1, attempts + 1))  # ctx.attempt per call
    entry = state.entries["f"]
    assert (entry["status"], entry["attempts"]) == (status, attempts)
    done = [ev for ev in events if isinstance(ev, NodeFinished) and ev.node_id == "f"]
    assert len(done) == 1 and done[0].retries == attempts - 1
    assert started(events).count("f") == 1
    if status == "error":
        assert assert_finished(events, "failed").error == f"node 'f': boom {attempts}"
    else:
        assert entry["output"] == {"calls": attempts}


def test_expression_errors_are_not_retried() -> None:
    slept: list[float] = []
    nodes = [node("s", "set", fields={"a": "{{ nope }}"},
                  settings={"retry": {"max_attempts": 5, "backoff": 1}})]
    events, state = execute(nodes, [], sleep=slept.append)
    assert_finished(events, "failed")
    assert state.entries["s"]["attempts"] == 1 and slept == []


# --- final output, events, node settings ---------------------------------------------------
def test_final_output_function_matches_event() -> None:
    nodes = [node("t", "manual"), node("c", "if", condition=True), node("a", "set", fields={"a": 1}),
             node("b", "noop")]
    edges = [edge("t", "c"), edge("c", "a", "true"), edge("c", "b", "false")]
    graph = Graph.parse(nodes, edges)
    state = RunState()
    events = list(run_graph(graph, RunContext(), state))
    assert assert_finished(events).output == final_output(graph, state) == {"a": {"a": 1}}


def test_event_dicts() -> None:
    events, _ = execute([node("t", "manual")], [], trigger_data=[1])
    first, second, third = (ev.to_dict() for ev in events)
    assert first["kind"] == "node.started" and first["node_type"] == "manual"
    assert second["kind"] == "node.finished" and second["entry"]["output"] == [1]
    assert second["retries"] == 0
    assert third == {"kind": "execution.finished", "status": "completed", "output": {"t": [1]},
                     "error": None}
    assert isinstance(events[0], NodeStarted)


def test_timeout_setting_is_passed_to_node_context() -> None:
    services: dict[str, Any] = {}
    execute([node("r", "test_recorder", settings={"timeout": 2.5})], [], registry=TEST_REGISTRY,
            services=services)
    assert services["seen"]["r"].timeout == 2.5
