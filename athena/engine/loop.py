"""Driving a loop node's iterations (the ``for_each`` node type).

A loop node's ``run`` returns :class:`Iterate`; the runner hands it here.  Each
item runs the loop body (:attr:`Graph.bodies`) as a nested :class:`Frame` with
``item`` and ``loop`` in scope and fresh per-iteration entries, so
``nodes.<body id>`` means the current iteration.  The iteration result is the
output of the body's leaf node(s) -- nodes that ran and activated no edge inside
the body: one leaf gives its output, several a dict by node id (an empty body
gives the item itself).

Guarantees:

* Results keep item order.  Events of one iteration are yielded contiguously
  and in item order (with ``concurrency > 1`` an iteration's events are
  buffered in its worker thread and yielded once it and all earlier items
  are done), followed by a :class:`LoopProgress`.
* While running, the loop node's entry has status "running" and output
  ``{"results": [...], "next_index": k, "errors": e}`` (checkpointed by
  LoopProgress).  A run continued from that state (crash, re-queue) restarts
  at item ``k``: completed items are not run again, the unfinished iteration is
  run again from its first node.  Nested loops restart with their outer
  iteration.
* Stop is checked before each item is launched (and before each body node);
  no further item starts.  With concurrency, items already running finish
  or stop at their next node, and their completed results are kept.
* A body node failing with on_error=stop fails the loop node with
  ``"item <loop.index>: node '<id>': <error>"`` (handled by the loop node's own
  on_error); a run limit (max_steps, max_duration) fails the whole run.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Union

from athena.engine.events import Event, LoopProgress
from athena.engine.frames import STOPPED, Frame, Halt, make_entry
from athena.engine.nodes.base import Iterate

if TYPE_CHECKING:
    from athena.engine.runner import Runner

__all__ = ["RUNNING", "run_loop"]

RUNNING = "running"
Outcome = Union[list[Any], str, Halt]  # results | loop error message | halt


def run_loop(runner: Runner, node_id: str, frame: Frame, plan: Iterate,
             previous: dict[str, Any] | None, started_at: str,
             attempts: int) -> Generator[Event, None, Outcome]:
    """Run the body of ``node_id`` once per item; return the results (or why not)."""
    return (yield from _Loop(runner, node_id, frame, plan, previous, started_at, attempts).run())


class _Loop:
    def __init__(self, runner: Runner, node_id: str, frame: Frame, plan: Iterate,
                 previous: dict[str, Any] | None, started_at: str, attempts: int) -> None:
        graph = runner.graph
        self.runner, self.node_id, self.frame = runner, node_id, frame
        self.items = list(plan.items)
        self.length = len(self.items)
        self.concurrency = max(1, int(plan.concurrency))
        self.type_name = graph.node_types[node_id].type
        self.handle = graph.node_types[node_id].body_handle
        self.level = graph.level(node_id)
        self.body = frozenset(graph.bodies.get(node_id, ()))
        self.started_at, self.attempts = started_at, attempts
        self.results, self.errors = _resume_point(previous, self.length)
        self.last: Frame | None = None

    def run(self) -> Generator[Event, None, Outcome]:
        self._save()
        if self.concurrency > 1 and self.length - len(self.results) > 1:
            halt = yield from self._concurrent()
        else:
            halt = yield from self._sequential()
        if halt is not None:
            return halt
        if self.last is not None:  # downstream sees the last iteration's body outputs
            for body_id in self.body:
                if body_id in self.last.nodes:
                    self.frame.nodes[body_id] = self.last.nodes[body_id]
        return self.results

    def _sequential(self) -> Generator[Event, None, Halt | str | None]:
        for index in range(len(self.results), self.length):
            if self.runner.stop_requested(self.frame):
                return STOPPED
            sub = self._frame(index, self.frame.cancelled)
            halt = yield from self.runner.run_frame(sub)
            outcome = yield from self._finish(index, sub, halt)
            if outcome is not None:
                return outcome
        return None

    def _concurrent(self) -> Generator[Event, None, Halt | str | None]:
        cancel = threading.Event()
        outer = self.frame.cancelled

        def cancelled() -> bool:
            return cancel.is_set() or outer()

        pending: deque[tuple[int, Frame, Future[tuple[list[Event], Halt | None]]]] = deque()
        next_index, stopping = len(self.results), False
        outcome: Halt | str | None = None
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix=f"loop-{self.node_id}") as pool:
            try:
                while True:
                    while (outcome is None and not stopping and next_index < self.length
                           and len(pending) < self.concurrency):
                        if self.runner.stop_requested(self.frame):
                            stopping = True
                            break
                        sub = self._frame(next_index, cancelled)
                        pending.append((next_index, sub,
                                        pool.submit(_drain, self.runner.run_frame(sub))))
                        next_index += 1
                    if not pending:
                        break
                    index, sub, future = pending.popleft()
                    events, halt = future.result()
                    if outcome is not None:
                        continue  # a previous item failed: discard later iterations
                    yield from events
                    outcome = yield from self._finish(index, sub, halt)
                    if outcome is not None:
                        cancel.set()
            finally:
                cancel.set()  # abandoned generator or failure: let running items wind down
        if outcome is None and stopping:
            return STOPPED
        return outcome

    def _frame(self, index: int, cancelled: Any) -> Frame:
        item = self.items[index]
        loop: dict[str, Any] = {"index": index + 1, "index0": index, "first": index == 0,
                                "last": index == self.length - 1, "length": self.length}
        if "loop" in self.frame.extra:
            loop["parent"] = self.frame.extra["loop"]
        entries = {self.node_id: {"node_id": self.node_id, "status": "success",
                                  "handle": self.handle, "output": item}}
        nodes = {key: value for key, value in self.frame.nodes.items() if key not in self.body}
        return Frame(self.node_id, entries, nodes, {**self.frame.extra, "item": item, "loop": loop},
                     index + 1, cancelled)

    def _finish(self, index: int, sub: Frame,
                halt: Halt | None) -> Generator[Event, None, Halt | str | None]:
        """Record item ``index``'s result (or turn its failure into the loop's)."""
        if halt is not None:
            return f"item {index + 1}: {halt.error}" if halt.kind == "failed" else halt
        result, failed = self._result(sub, self.items[index])
        self.results.append(result)
        self.errors += failed
        self.last = sub
        entry = self._save()
        yield LoopProgress(self.node_id, index + 1, self.length, len(self.results), self.errors,
                           entry)
        return None

    def _result(self, sub: Frame, item: Any) -> tuple[Any, bool]:
        if not self.level:
            return item, False
        outgoing = self.runner.graph.outgoing
        leaves: dict[str, Any] = {}
        failed = False
        for body_id in self.level:
            entry = sub.entries.get(body_id)
            if entry is None or entry["status"] not in ("success", "error"):
                continue
            failed = failed or entry["status"] == "error"
            handle = entry.get("handle")
            if any(e["source_handle"] == handle and e["target"] in self.body
                   for e in outgoing[body_id]):
                continue
            leaves[body_id] = entry.get("output")
        if len(leaves) == 1:
            return next(iter(leaves.values())), failed
        return (leaves or None), failed

    def _save(self) -> dict[str, Any]:
        progress = {"results": list(self.results), "next_index": len(self.results),
                    "errors": self.errors}
        entry = make_entry(self.node_id, self.type_name, RUNNING, progress, None, None,
                           self.started_at, None, self.attempts)
        self.frame.record(self.node_id, entry)
        return dict(entry)


def _resume_point(previous: dict[str, Any] | None, length: int) -> tuple[list[Any], int]:
    """Results to keep from an unfinished run of this loop node (its "running" entry)."""
    if previous is None or previous.get("status") != RUNNING:
        return [], 0
    progress = previous.get("output")
    if not isinstance(progress, dict):
        return [], 0
    results, next_index = progress.get("results"), progress.get("next_index")
    if (not isinstance(results, list) or not isinstance(next_index, int)
            or isinstance(next_index, bool) or not 0 <= next_index <= min(len(results), length)):
        return [], 0
    errors = progress.get("errors")
    return list(results[:next_index]), errors if isinstance(errors, int) else 0


def _drain(steps: Generator[Event, None, Halt | None]) -> tuple[list[Event], Halt | None]:
    """Run one iteration to its end in a worker thread, buffering its events."""
    events: list[Event] = []
    while True:
        try:
            events.append(next(steps))
        except StopIteration as done:
            return events, done.value
