from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from athena.engine import (
    Graph, NodeContext, NodeError, NodeFinished, NodeResult, NodeStarted, NodeType, RunContext,
    RunFinished, RunState, RunStopped, RunSuspended, StopRequested, Suspend, final_output,
    registry, run_graph,
)

from ._engine_helpers import assert_finished, edge, execute, finished, node, started, statuses

ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


# --- test-only node types, registered in a private registry --------------------------------
class Flaky(NodeType):
    """Fails ``fail_times`` times (counted in services["calls"]) then succeeds."""

    type = "test_flaky"

    def run(self, ctx: NodeContext) -> NodeResult:
        calls = ctx.services.setdefault("calls", [])
        calls.append(ctx.attempt)
        if len(calls) <= ctx.services.get("fail_times", 0):
            raise NodeError(f"boom {len(calls)}")
        return NodeResult({"calls": len(calls)})


class Approval(NodeType):
    """Suspends until resumed; then outputs the resume payload."""

    type = "test_approval"

    def run(self, ctx: NodeContext) -> NodeResult | Suspend:
        if ctx.resume is None:
            return Suspend("waiting", datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                           {"question": "ok?"})
        return NodeResult({"approved": ctx.resume["approved"], "input": ctx.input})


class Buggy(NodeType):
    type = "test_buggy"

    def run(self, ctx: NodeContext) -> NodeResult:
        return NodeResult(ctx.input["missing"])  # TypeError / KeyError on purpose


class Stopper(NodeType):
    type = "test_stopper"

    def run(self, ctx: NodeContext) -> NodeResult:
        if ctx.should_stop():
            raise StopRequested()
        return NodeResult(None)


class Recorder(NodeType):
    """Records the NodeContext it saw in services["seen"]."""

    type = "test_recorder"

    def run(self, ctx: NodeContext) -> NodeResult:
        ctx.services.setdefault("seen", {})[ctx.node_id] = ctx
        return NodeResult(ctx.input)


TEST_REGISTRY = registry.copy()
for _cls in (Flaky, Approval, Buggy, Stopper, Recorder):
    TEST_REGISTRY.register(_cls)


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


# --- stopping, limits ----------------------------------------------------------------------
@pytest.mark.parametrize("allowed", [0, 1, 2])
def test_stop_is_checked_before_every_node(allowed: int) -> None:
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > allowed

    nodes = [node("t", "manual"), node("a", "noop"), node("b", "noop")]
    events, state = execute(nodes, [edge("t", "a"), edge("a", "b")], should_stop=should_stop)
    assert isinstance(events[-1], RunStopped)
    assert events[-1].to_dict() == {"kind": "execution.stopped", "handoff": False}
    assert started(events) == ["t", "a", "b"][:allowed]
    assert list(state.entries) == ["t", "a", "b"][:allowed]
    assert not any(isinstance(ev, RunFinished) for ev in events)


def test_node_can_raise_stop_requested() -> None:
    flags = iter([False, True])
    nodes = [node("s", "test_stopper"), node("after", "noop")]
    events, state = execute(nodes, [edge("s", "after")], registry=TEST_REGISTRY,
                            should_stop=lambda: next(flags, True))
    assert isinstance(events[-1], RunStopped)
    assert started(events) == ["s"]
    assert "s" not in state.entries  # not finished: would run again on restart


def test_max_steps_fails_the_run() -> None:
    nodes = [node(f"n{i}", "noop") for i in range(5)]
    edges = [edge(f"n{i}", f"n{i + 1}") for i in range(4)]
    events, state = execute(nodes, edges, max_steps=3)
    final = assert_finished(events, "failed")
    assert "limit" in final.error and "3" in final.error
    assert started(events) == ["n0", "n1", "n2"]
    assert state.steps == 3


def test_max_duration_fails_the_run_with_injected_clock() -> None:
    start = datetime(2026, 2, 10, 14, 30, tzinfo=timezone.utc)
    ticks = iter(start + timedelta(seconds=i) for i in range(1000))
    nodes = [node(f"n{i}", "noop") for i in range(10)]
    edges = [edge(f"n{i}", f"n{i + 1}") for i in range(9)]
    events, state = execute(nodes, edges, max_duration=5, now=lambda: next(ticks))
    final = assert_finished(events, "failed")
    assert "time limit" in final.error
    assert 0 < len(state.entries) < 10
    assert state.entries["n0"]["started_at"] == "2026-02-10T14:30:01.000000Z"


# --- suspend / resume / retry-style resume -------------------------------------------------
def test_suspend_then_resume_with_payload() -> None:
    nodes = [node("t", "manual"), node("ask", "test_approval"), node("done", "noop"),
             node("side", "set", fields={"s": 1})]
    edges = [edge("t", "ask"), edge("ask", "done"), edge("t", "side")]
    graph = Graph.parse(nodes, edges, registry=TEST_REGISTRY)
    state = RunState()
    events = list(run_graph(graph, RunContext(trigger_data={"doc": 1}), state))
    suspended = events[-1]
    assert isinstance(suspended, RunSuspended)
    assert (suspended.node_id, suspended.status, suspended.info) == ("ask", "waiting",
                                                                     {"question": "ok?"})
    assert suspended.to_dict()["wait_till"] == "2030-01-02T03:04:05.000000Z"
    assert state.entries["ask"]["status"] == "waiting"
    assert "done" not in state.entries and "side" not in state.entries

    # Persist and reload; calling again without a payload re-reports the suspension.
    saved = state.to_entries()
    again = list(run_graph(graph, RunContext(), RunState.from_entries(saved)))
    assert len(again) == 1 and isinstance(again[0], RunSuspended)
    assert again[0].wait_till == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    restored = RunState.from_entries(saved)
    events = list(run_graph(graph, RunContext(trigger_data={"doc": 1},
                                              resume={"ask": {"approved": True}}), restored))
    final = assert_finished(events)
    assert started(events) == ["ask", "done", "side"]  # 't' is not run again
    assert restored.entries["ask"]["status"] == "success"
    assert restored.entries["ask"]["output"] == {"approved": True, "input": {"doc": 1}}
    assert restored.entries["ask"]["started_at"] == state.entries["ask"]["started_at"]
    assert final.output == {"done": {"approved": True, "input": {"doc": 1}}, "side": {"s": 1}}


def test_prefilled_success_entries_are_not_rerun() -> None:
    nodes = [node("t", "manual"), node("a", "test_flaky"), node("b", "set",
                                                              fields={"got": "{{ input.calls }}"})]
    graph = Graph.parse(nodes, [edge("t", "a"), edge("a", "b")], registry=TEST_REGISTRY)
    services: dict[str, Any] = {"fail_times": 1}
    first = RunState()
    events = list(run_graph(graph, RunContext(services=services), first))
    assert assert_finished(events, "failed").error == "node 'a': boom 1"
    kept = [e for e in first.to_entries() if e["status"] == "success"]
    assert [e["node_id"] for e in kept] == ["t"]
    state = RunState.from_entries(kept)
    assert state.steps == 1
    events = list(run_graph(graph, RunContext(services=services), state))
    assert_finished(events)
    assert started(events) == ["a", "b"]
    assert state.entries["b"]["output"] == {"got": 2}
    assert state.steps == 3


def test_prefilled_entries_feed_routing_and_scope() -> None:
    nodes = [node("t", "manual"), node("c", "if", condition=True), node("y", "noop"),
             node("n", "noop"), node("s", "set", fields={"from_c": "{{ nodes.c.output.k }}"})]
    edges = [edge("t", "c"), edge("c", "y", "true"), edge("c", "n", "false"), edge("c", "s", "false")]
    prefilled = [
        {"node_id": "t", "type": "manual", "status": "success", "output": {}, "error": None,
         "handle": "main", "started_at": None, "stopped_at": None, "attempts": 1},
        {"node_id": "c", "type": "if", "status": "success", "output": {"k": "v"}, "error": None,
         "handle": "false", "started_at": None, "stopped_at": None, "attempts": 1},
    ]
    events, state = execute(nodes, edges, state=RunState.from_entries(prefilled))
    assert_finished(events)
    assert started(events) == ["n", "s"]  # 'c' chose "false" last time; not re-evaluated
    assert state.entries["y"]["status"] == "skipped"
    assert state.entries["s"]["output"] == {"from_c": "v"}


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


def test_handoff_happens_only_between_top_level_nodes() -> None:
    from athena.engine import Graph, RunContext, RunState, RunStopped, NodeStarted, run_graph

    nodes = [{"id": "start", "type": "manual"}] + [
        {"id": f"n{i}", "type": "set", "parameters": {"fields": {"i": i}}} for i in range(1, 5)]
    edges = [{"source": nodes[i - 1]["id"], "target": nodes[i]["id"]} for i in range(1, 5)]
    graph = Graph.parse(nodes, edges)
    checks = []

    def should_handoff() -> bool:
        checks.append(1)
        return len(checks) > 2

    state = RunState()
    events = list(run_graph(graph, RunContext(should_handoff=should_handoff), state))
    assert [e.node_id for e in events if isinstance(e, NodeStarted)] == ["start", "n1"]
    assert isinstance(events[-1], RunStopped) and events[-1].handoff is True
    # a continuation with the saved state runs the rest, nothing twice
    rest = list(run_graph(graph, RunContext(), RunState.from_entries(state.to_entries())))
    assert [e.node_id for e in rest if isinstance(e, NodeStarted)] == ["n2", "n3", "n4"]
