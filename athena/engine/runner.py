"""Execution of a validated :class:`Graph`, as a generator of events.

The runner is pure: it mutates the given :class:`RunState` and yields events;
persisting them, scheduling resumes and doing I/O is the caller's business.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError, StopRequested
from athena.engine.events import (
    Event, NodeFinished, NodeStarted, RunFinished, RunStopped, RunSuspended,
)
from athena.engine.expressions import Evaluator, default_evaluator
from athena.engine.graph import Graph
from athena.engine.nodes.base import NodeResult, Suspend
from athena.engine.state import FINAL_STATUSES, SUSPENDED_STATUSES, RunContext, RunState
from athena.engine.timeutil import iso, parse_iso

__all__ = ["RunContext", "RunState", "final_output", "run_graph"]


def run_graph(graph: Graph, ctx: RunContext, state: RunState, *,
              evaluator: Evaluator = default_evaluator) -> Iterator[Event]:
    """Run (or continue) ``graph``; yield events until finished, suspended or stopped."""
    entries = state.entries
    nodes_scope: dict[str, dict[str, Any]] = {}
    for node_id, entry in entries.items():
        if entry.get("status") in FINAL_STATUSES:
            nodes_scope[node_id] = {"output": entry.get("output"), "status": entry["status"]}
    base_scope = {"trigger": ctx.trigger_data, "nodes": nodes_scope,
                  "variables": ctx.variables, "execution": ctx.execution}
    began = ctx.now() if ctx.max_duration is not None else None

    for node_id in graph.order:
        previous = entries.get(node_id)
        resume_payload = None
        if previous is not None:
            status = previous.get("status")
            if status in FINAL_STATUSES:
                continue
            if status in SUSPENDED_STATUSES:
                if node_id not in ctx.resume:
                    yield _suspended_again(node_id, previous)
                    return
                resume_payload = ctx.resume[node_id]
        if ctx.should_stop():
            yield RunStopped()
            return
        node_type = graph.node_types[node_id]
        incoming = graph.incoming[node_id]
        if incoming:
            inputs = _active_inputs(incoming, entries)
            if not inputs:
                stamp = iso(ctx.now())
                entry = _entry(node_id, node_type.type, "skipped", None, None, None, stamp, stamp, 0)
                entries[node_id] = entry
                nodes_scope[node_id] = {"output": None, "status": "skipped"}
                yield NodeFinished(node_id, entry, 0)
                continue
            node_input = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
        else:
            inputs, node_input = {}, ctx.trigger_data
        moment = ctx.now()
        limit_error = _limit_error(ctx, state, began, moment)
        if limit_error:
            yield RunFinished("failed", final_output(graph, state), limit_error)
            return
        state.steps += 1

        settings = graph.settings[node_id]
        started_at = iso(moment)
        yield NodeStarted(node_id, node_type.type, started_at)
        if previous is not None and previous.get("started_at"):
            started_at = previous["started_at"]
        scope = {**base_scope, "input": node_input}
        attempts = 0
        while True:
            attempts += 1
            node_ctx = NodeContext(graph.nodes[node_id], node_type, ctx, scope, node_input,
                                   inputs, resume_payload, settings.timeout, attempts, evaluator)
            error, retryable = None, True
            try:
                result = node_type.run(node_ctx)
            except StopRequested:
                yield RunStopped()
                return
            except NodeError as exc:
                error, retryable = str(exc) or type(exc).__name__, exc.retryable
            except Exception as exc:  # noqa: BLE001 - a buggy node must not crash the run
                error = f"{type(exc).__name__}: {exc}"
            if error is None or not retryable or attempts >= settings.max_attempts:
                break
            delay = settings.backoff * 2 ** (attempts - 1)
            if delay > 0:
                ctx.sleep(delay)
            if ctx.should_stop():
                yield RunStopped()
                return

        stopped_at = iso(ctx.now())
        if error is not None:
            cont = settings.on_error == "continue"
            entry = _entry(node_id, node_type.type, "error", {"error": error} if cont else None,
                           error, "error" if cont else None, started_at, stopped_at, attempts)
            entries[node_id] = entry
            nodes_scope[node_id] = {"output": entry["output"], "status": "error"}
            yield NodeFinished(node_id, entry, attempts - 1)
            if not cont:
                yield RunFinished("failed", final_output(graph, state), f"node '{node_id}': {error}")
                return
            continue
        if isinstance(result, Suspend):
            output = {"wait_till": iso(result.wait_till) if result.wait_till else None,
                      "info": result.info}
            entry = _entry(node_id, node_type.type, result.status, output, None, None,
                           started_at, None, attempts)
            entries[node_id] = entry
            yield NodeFinished(node_id, entry, attempts - 1)
            yield RunSuspended(node_id, result.status, result.wait_till, result.info)
            return
        if not isinstance(result, NodeResult):
            result = NodeResult(result)
        entry = _entry(node_id, node_type.type, "success", result.output, None, result.handle,
                       started_at, stopped_at, attempts)
        entries[node_id] = entry
        nodes_scope[node_id] = {"output": result.output, "status": "success"}
        yield NodeFinished(node_id, entry, attempts - 1)

    yield RunFinished("completed", final_output(graph, state), None)


def final_output(graph: Graph, state: RunState) -> dict[str, Any]:
    """Outputs of successful nodes none of whose outgoing edges were active."""
    out: dict[str, Any] = {}
    for node_id, entry in state.entries.items():
        if entry.get("status") != "success" or node_id not in graph.outgoing:
            continue
        handle = entry.get("handle")
        if any(edge["source_handle"] == handle for edge in graph.outgoing[node_id]):
            continue
        out[node_id] = entry.get("output")
    return out


def _entry(node_id: str, type_name: str, status: str, output: Any, error: str | None,
           handle: str | None, started_at: str | None, stopped_at: str | None,
           attempts: int) -> dict[str, Any]:
    return {"node_id": node_id, "type": type_name, "status": status, "output": output,
            "error": error, "handle": handle, "started_at": started_at,
            "stopped_at": stopped_at, "attempts": attempts}


def _active_inputs(incoming: list[dict[str, Any]],
                   entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Outputs of sources whose chosen handle activates an incoming edge."""
    inputs: dict[str, Any] = {}
    for edge in incoming:
        source = entries.get(edge["source"])
        if (source is not None and source.get("status") in ("success", "error")
                and source.get("handle") == edge["source_handle"]):
            inputs.setdefault(edge["source"], source.get("output"))
    return inputs


def _limit_error(ctx: RunContext, state: RunState, began: datetime | None,
                 moment: datetime) -> str | None:
    if state.steps >= ctx.max_steps:
        return f"step limit exceeded: more than {ctx.max_steps} node executions"
    if began is not None and ctx.max_duration is not None:
        elapsed = (moment - began).total_seconds()
        if elapsed > ctx.max_duration:
            return f"time limit exceeded: run took longer than {ctx.max_duration} seconds"
    return None


def _suspended_again(node_id: str, entry: dict[str, Any]) -> RunSuspended:
    output = entry.get("output") if isinstance(entry.get("output"), dict) else {}
    wait_till = output.get("wait_till")
    return RunSuspended(node_id, entry["status"],
                        parse_iso(wait_till) if isinstance(wait_till, str) else None,
                        output.get("info") or {})
