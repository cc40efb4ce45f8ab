"""Every node type that can fail at run time, both ways: ``on_error: stop`` fails the run with a
message naming the node; ``on_error: continue`` records the error and routes to the ``error``
handle. (Triggers, ``noop`` and ``merge`` have no failure of their own; ``http_request``,
``llm``, ``for_each`` and ``sub_workflow`` are covered with real servers in their own tests.)"""
from __future__ import annotations

from typing import Any

import pytest

from athena.engine import RunFinished
from tests.engine._engine_helpers import edge, execute, node

BROKEN = "{{ nodes.nowhere.output.x }}"  # a reference to a node that never ran

FAILING: dict[str, dict[str, Any]] = {
    "set": {"fields": {"x": BROKEN}},
    "if": {"condition": BROKEN},
    "switch": {"value": BROKEN, "cases": {"a": 1}},
    "filter": {"items": "{{ 42 }}", "condition": "{{ item }}"},
    "transform": {"expression": "a", "language": "jmespath", "input": BROKEN},
    "stop_and_error": {"message": "refused"},
    "wait": {"until": BROKEN},
    "approval": {"message": BROKEN},
    "respond_to_webhook": {"status": 200, "body": BROKEN},
}


def _graph(type_: str, on_error: str) -> tuple[list, list]:
    nodes = [node("start", "manual"), node("x", type_, settings={"on_error": on_error}, **FAILING[type_]),
             node("recover", "set", fields={"recovered": "{{ nodes.x.output.error }}"})]
    edges = [edge("start", "x")]
    if on_error == "continue":
        edges.append(edge("x", "recover", handle="error"))
    return nodes, edges


@pytest.mark.parametrize("type_", sorted(FAILING))
def test_runtime_failure_with_on_error_stop_fails_the_run(type_: str) -> None:
    nodes, edges = _graph(type_, "stop")
    events, state = execute(nodes[:2], edges, trigger_data={})
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "failed", finished
    assert "node 'x'" in finished.error
    assert state.entries["x"]["status"] == "error"


@pytest.mark.parametrize("type_", sorted(FAILING))
def test_runtime_failure_with_on_error_continue_routes_to_the_error_handle(type_: str) -> None:
    nodes, edges = _graph(type_, "continue")
    events, state = execute(nodes, edges, trigger_data={})
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "completed", finished
    assert state.entries["x"]["status"] == "error" and state.entries["x"]["handle"] == "error"
    assert state.entries["recover"]["status"] == "success"
    assert state.entries["recover"]["output"]["recovered"] == state.entries["x"]["output"]["error"]
    assert state.entries["recover"]["output"]["recovered"]  # the error message, not empty
