"""The engine runner (``run_graph``) interrupted and continued: the stop check before every
node, ``StopRequested``, the step and time limits, suspend and resume with a payload, runs
continued from saved entries, and handoff between top-level nodes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from athena.engine import Graph, RunContext, RunFinished, RunState, RunStopped, RunSuspended, run_graph

from ._engine_helpers import assert_finished, edge, execute, node, started
from ._runner_node_types import TEST_REGISTRY


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
