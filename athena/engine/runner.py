"""Execution of a validated :class:`Graph`, as a generator of events.

The runner is pure: it mutates the given :class:`RunState` and yields events;
persisting them, scheduling resumes and doing I/O is the caller's business.
Loop nodes (for_each) are driven by :mod:`athena.engine.loop`, which runs each
iteration of a body as a nested :class:`Frame` through :meth:`Runner.run_node`.
"""
from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import Any

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError, StopRequested
from athena.engine.events import (
    Event, LoopProgress, NodeFinished, NodeStarted, RunFinished, RunStopped, RunSuspended,
)
from athena.engine.expressions import Evaluator, default_evaluator
from athena.engine.frames import HANDOFF, STOPPED, Frame, Halt, active_inputs, make_entry
from athena.engine.budget import node_deadline
from athena.engine.graph import Graph
from athena.engine.loop import run_loop
from athena.engine.nodes.base import Iterate, NodeResult, NodeType, Suspend
from athena.engine.state import FINAL_STATUSES, SUSPENDED_STATUSES, RunContext, RunState
from athena.timeutil import iso, parse_iso

__all__ = ["RunContext", "RunState", "Runner", "final_output", "run_graph"]

Steps = Generator[Event, None, Halt | None]


def run_graph(graph: Graph, ctx: RunContext, state: RunState, *,
              evaluator: Evaluator = default_evaluator) -> Iterator[Event]:
    """Run (or continue) ``graph``; yield events until finished, suspended or stopped."""
    yield from Runner(graph, ctx, state, evaluator).run()


class Runner:
    """One run of a graph; nodes inside loop bodies run in nested frames."""

    def __init__(self, graph: Graph, ctx: RunContext, state: RunState,
                 evaluator: Evaluator = default_evaluator) -> None:
        self.graph, self.ctx, self.state, self.evaluator = graph, ctx, state, evaluator
        self.base_scope = {"trigger": ctx.trigger_data, "variables": ctx.variables,
                           "execution": ctx.execution}
        self.began = ctx.now() if ctx.max_duration is not None else None
        self._steps_lock = threading.Lock()  # concurrent loop iterations count steps too

    def run(self) -> Iterator[Event]:
        state = self.state
        nodes_scope = {node_id: {"output": entry.get("output"), "status": entry["status"]}
                       for node_id, entry in state.entries.items()
                       if entry.get("status") in FINAL_STATUSES}
        halt = yield from self._mirrored(self.run_frame(Frame(None, state.entries, nodes_scope)))
        if halt is None:
            yield RunFinished("completed", final_output(self.graph, state), None)
        elif halt.kind == "stopped":
            yield RunStopped()
        elif halt.kind == "handoff":
            yield RunStopped(handoff=True)
        elif halt.event is not None:
            yield halt.event
        else:
            yield RunFinished("failed", final_output(self.graph, state), halt.error)

    def _mirrored(self, steps: Steps) -> Steps:
        """Relay events; copy loop-body entries into the state (last iteration wins).

        This is the only place body entries reach ``state.entries``, so the
        state is only written from the thread that consumes the events.
        """
        entries = self.state.entries
        while True:
            try:
                event = next(steps)
            except StopIteration as done:
                return done.value
            if isinstance(event, NodeFinished) and event.iteration is not None:
                entries[event.node_id] = event.entry
            elif isinstance(event, LoopProgress):
                entries[event.node_id] = event.entry
            yield event

    def run_frame(self, frame: Frame) -> Steps:
        """Run the nodes ``frame`` owns, in topological order."""
        for node_id in self.graph.level(frame.owner):
            halt = yield from self.run_node(node_id, frame)
            if halt is not None:
                return halt
        return None

    def stop_requested(self, frame: Frame) -> bool:
        return frame.cancelled() or bool(self.ctx.should_stop())

    def take_step(self, moment: datetime) -> str | None:
        """Count one node execution; return the limit error if a limit is exceeded."""
        with self._steps_lock:
            error = _limit_error(self.ctx, self.state, self.began, moment)
            if error is None:
                self.state.steps += 1
            return error

    def run_node(self, node_id: str, frame: Frame) -> Steps:
        previous = frame.entries.get(node_id)
        resume_payload = None
        if previous is not None:
            status = previous.get("status")
            if status in FINAL_STATUSES:
                return None
            if status in SUSPENDED_STATUSES:
                if node_id not in self.ctx.resume:
                    return Halt("suspended", event=_suspended_again(node_id, previous))
                resume_payload = self.ctx.resume[node_id]
        if self.stop_requested(frame):
            return STOPPED
        if frame.owner is None and self.ctx.should_handoff():
            return HANDOFF  # only between top-level nodes: a loop always finishes first
        node_type = self.graph.node_types[node_id]
        incoming = self.graph.inputs[node_id]
        if incoming:
            inputs = active_inputs(incoming, frame.entries)
            if not inputs:
                stamp = iso(self.ctx.now())
                entry = make_entry(node_id, node_type.type, "skipped", None, None, None, stamp,
                                   stamp, 0)
                frame.record(node_id, entry)
                yield NodeFinished(node_id, entry, 0, frame.iteration)
                return None
            node_input = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
        else:
            inputs, node_input = {}, self.ctx.trigger_data
        moment = self.ctx.now()
        limit_error = self.take_step(moment)
        if limit_error:
            return Halt("fatal", limit_error)

        started_at = iso(moment)
        yield NodeStarted(node_id, node_type.type, started_at, frame.iteration, node_type.pure)
        if previous is not None and previous.get("started_at"):
            started_at = previous["started_at"]
        scope = {**self.base_scope, **frame.extra, "nodes": frame.nodes, "input": node_input}
        called = self._call(node_id, node_type, frame, scope, node_input, inputs, resume_payload)
        if called is None:
            return STOPPED
        result, error, attempts = called
        if isinstance(result, Iterate):
            outcome = yield from run_loop(self, node_id, frame, result, previous, started_at,
                                          attempts)
            if isinstance(outcome, list):
                result = NodeResult(outcome, result.handle)
            elif isinstance(outcome, str):
                error = outcome
            elif outcome.kind != "fatal":
                return outcome  # stopped: the loop node keeps its "running" entry
            else:
                error = outcome.error
                entry = make_entry(node_id, node_type.type, "error", None, error, None,
                                   started_at, iso(self.ctx.now()), attempts)
                frame.record(node_id, entry)
                yield NodeFinished(node_id, entry, attempts - 1, frame.iteration)
                return outcome
        elif isinstance(result, Suspend) and frame.owner is not None:
            error = f"a node cannot wait or pause inside the body of loop node '{frame.owner}'"

        stopped_at = iso(self.ctx.now())
        if error is not None:
            cont = self.graph.settings[node_id].on_error == "continue"
            entry = make_entry(node_id, node_type.type, "error",
                               {"error": error} if cont else None, error,
                               "error" if cont else None, started_at, stopped_at, attempts)
            frame.record(node_id, entry)
            yield NodeFinished(node_id, entry, attempts - 1, frame.iteration)
            return None if cont else Halt("failed", f"node '{node_id}': {error}")
        if isinstance(result, Suspend):
            output = {"wait_till": iso(result.wait_till) if result.wait_till else None,
                      "info": result.info}
            entry = make_entry(node_id, node_type.type, result.status, output, None, None,
                               started_at, None, attempts)
            frame.record(node_id, entry)
            yield NodeFinished(node_id, entry, attempts - 1, frame.iteration)
            return Halt("suspended", event=RunSuspended(node_id, result.status, result.wait_till,
                                                        result.info))
        if not isinstance(result, NodeResult):
            result = NodeResult(result)
        entry = make_entry(node_id, node_type.type, "success", result.output, None,
                           result.handle, started_at, stopped_at, attempts)
        frame.record(node_id, entry)
        yield NodeFinished(node_id, entry, attempts - 1, frame.iteration)
        return None

    def _call(self, node_id: str, node_type: NodeType, frame: Frame, scope: dict[str, Any],
              node_input: Any, inputs: dict[str, Any],
              resume_payload: Any) -> tuple[Any, str | None, int] | None:
        """Run the node with retries: (result, error, attempts), or None if stopped."""
        settings = self.graph.settings[node_id]
        attempts = 0
        while True:
            attempts += 1
            node_ctx = NodeContext(self.graph.nodes[node_id], node_type, self.ctx, scope,
                                   node_input, inputs, resume_payload, settings.timeout,
                                   attempts, self.evaluator)
            result, error, retryable = None, None, True
            try:
                with node_deadline(self._run_time_left(), self._run_time_message()), \
                        node_deadline(settings.timeout, _timeout_message(node_id, settings.timeout)):
                    result = node_type.run(node_ctx)
            except StopRequested:
                return None
            except NodeError as exc:
                error, retryable = str(exc) or type(exc).__name__, exc.retryable
            except Exception as exc:  # noqa: BLE001 - a buggy node must not crash the run
                error = f"{type(exc).__name__}: {exc}"
            if error is None or not retryable or attempts >= settings.max_attempts:
                return result, error, attempts
            delay = settings.backoff * 2 ** (attempts - 1)
            if delay > 0:
                self.ctx.sleep(delay)
            if self.stop_requested(frame):
                return None


    def _run_time_left(self) -> float | None:
        """Seconds left of the run's maximum duration (None: no maximum)."""
        if self.began is None or self.ctx.max_duration is None:
            return None
        return self.ctx.max_duration - (self.ctx.now() - self.began).total_seconds()

    def _run_time_message(self) -> str:
        return f"time limit exceeded: run took longer than {self.ctx.max_duration} seconds"


def _timeout_message(node_id: str, timeout: float | None) -> str:
    return f"node '{node_id}' timed out: its settings.timeout of {timeout:g} seconds passed" if timeout else ""


def final_output(graph: Graph, state: RunState) -> dict[str, Any]:
    """Outputs of successful top-level nodes none of whose outgoing edges were active.

    Loop-body nodes are left out: their loop node's output collects them.
    """
    out: dict[str, Any] = {}
    for node_id, entry in state.entries.items():
        if (entry.get("status") != "success" or node_id not in graph.outgoing
                or graph.owner.get(node_id) is not None):
            continue
        handle = entry.get("handle")
        if any(edge["source_handle"] == handle for edge in graph.outgoing[node_id]):
            continue
        out[node_id] = entry.get("output")
    return out


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
