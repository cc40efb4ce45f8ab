"""The for_each loop node at run time: limits, stop, resume after a crash, concurrency."""
from __future__ import annotations

import threading
from typing import Any

import pytest

from athena.engine import (
    Graph, NodeFinished, NodeStarted, RunContext, RunState, RunStopped, run_graph,
)

from ._engine_helpers import assert_finished, edge, execute, node, started
from ._for_each_helpers import EXPECTED, REG, iterations, loop_node, progress, two_node_body


def test_max_steps_counts_every_body_node_run() -> None:
    nodes, edges = two_node_body()
    events, state = execute(nodes, edges, trigger_data={"list": [1, 2, 3, 4, 5]}, max_steps=7)
    final = assert_finished(events, "failed")
    assert final.error == "step limit exceeded: more than 7 node executions"  # not item-wrapped
    assert started(events) == ["t", "each", "a", "b", "a", "b", "a"]
    assert state.steps == 7 and state.entries["each"]["status"] == "error"


# --- stop and resume ------------------------------------------------------------------------
def test_stop_between_items_then_resume_continues_at_next_index() -> None:
    nodes = [node("t", "manual"), loop_node(), node("n", "test_count"),
             node("after", "noop")]
    edges = [edge("t", "each"), edge("each", "n", "item"), edge("each", "after", "done")]
    graph = Graph.parse(nodes, edges, registry=REG)
    services: dict[str, Any] = {}
    state = RunState()
    ctx = RunContext(trigger_data={"list": ["a", "b", "c", "d"]}, services=services,
                     should_stop=lambda: len(services.get("seen", [])) >= 2)
    events = list(run_graph(graph, ctx, state))
    assert isinstance(events[-1], RunStopped)
    assert services["seen"] == ["a", "b"] and iterations(events, "n") == [1, 2]
    assert state.entries["each"]["status"] == "running"
    assert state.entries["each"]["output"] == {"results": ["a", "b"], "next_index": 2,
                                               "errors": 0}

    restored = RunState.from_entries(state.to_entries())
    events = list(run_graph(graph, RunContext(trigger_data={"list": ["a", "b", "c", "d"]},
                                              services=services), restored))
    assert_finished(events)
    assert services["seen"] == ["a", "b", "c", "d"]  # a and b were not run again
    assert iterations(events, "n") == [3, 4]
    assert restored.entries["each"]["output"] == ["a", "b", "c", "d"]
    assert restored.entries["each"]["started_at"] == state.entries["each"]["started_at"]


@pytest.mark.parametrize("crash_after", [3, 4, 5, 9])
def test_crash_mid_iteration_restarts_that_iteration(crash_after: int) -> None:
    """The job checkpoints state after every event; a crash loses the unfinished iteration."""
    nodes, edges = two_node_body()
    graph = Graph.parse(nodes, edges)
    state = RunState()
    ctx = RunContext(trigger_data={"list": [1, 2, 3, 4, 5]})
    steps = run_graph(graph, ctx, state)
    seen = [next(steps) for _ in range(crash_after)]
    steps.close()
    done = len(progress(seen))
    saved = state.to_entries()
    restored = RunState.from_entries(saved)
    events = list(run_graph(graph, ctx, restored))
    assert_finished(events)
    assert iterations(events, "a") == list(range(done + 1, 6))
    assert restored.entries["each"]["output"] == EXPECTED


def test_concurrency_keeps_item_order_and_event_order() -> None:
    nodes = [node("t", "manual"), loop_node(concurrency=4), node("s", "test_slow"),
             node("post", "set", fields={"v": "{{ input }}", "i": "{{ loop.index }}"})]
    edges = [edge("t", "each"), edge("each", "s", "item"), edge("s", "post")]
    services: dict[str, Any] = {"lock": threading.Lock(), "running": 0, "peak": 0}
    items = list(range(10))
    events, state = execute(nodes, edges, registry=REG, services=services,
                            trigger_data={"list": items})
    assert_finished(events)
    assert state.entries["each"]["output"] == [{"v": n * 10, "i": n + 1} for n in items]
    assert 1 < services["peak"] <= 4
    body = [(type(ev).__name__, ev.node_id, ev.iteration) for ev in events
            if isinstance(ev, (NodeStarted, NodeFinished)) and ev.iteration is not None]
    assert body == [(kind, node_id, i) for i in range(1, 11)
                    for kind, node_id in [("NodeStarted", "s"), ("NodeFinished", "s"),
                                          ("NodeStarted", "post"), ("NodeFinished", "post")]]
    assert [p.index for p in progress(events)] == list(range(1, 11))
    assert state.entries["post"]["output"] == {"v": 90, "i": 10}


def test_concurrency_stop_launches_no_further_item() -> None:
    nodes = [node("t", "manual"), loop_node(concurrency=2), node("n", "test_count")]
    services: dict[str, Any] = {}
    checks = {"n": 0}

    def should_stop() -> bool:  # t, each, then 2 item launches are allowed
        checks["n"] += 1
        return checks["n"] > 4

    events, state = execute(nodes, [edge("t", "each"), edge("each", "n", "item")],
                            registry=REG, services=services, should_stop=should_stop,
                            trigger_data={"list": [1, 2, 3, 4]})
    assert isinstance(events[-1], RunStopped)
    assert 3 not in services.get("seen", []) and 4 not in services.get("seen", [])
    assert state.entries["each"]["status"] == "running"


def test_concurrent_failure_reports_first_failing_item() -> None:
    nodes = [node("t", "manual"), loop_node(concurrency=3),
             node("chk", "stop_and_error", message="bad {{ item }}"),
             node("c", "if", condition="{{ item >= 2 }}")]
    edges = [edge("t", "each"), edge("each", "c", "item"), edge("c", "chk", "true")]
    events, _ = execute(nodes, edges, trigger_data={"list": [0, 1, 2, 3, 4, 5]})
    assert assert_finished(events, "failed").error == "node 'each': item 3: node 'chk': bad 2"
    assert max(i for i in iterations(events, "c") if i is not None) == 3  # later items discarded
