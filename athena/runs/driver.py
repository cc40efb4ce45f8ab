"""The run driver: the one loop between the engine and the world.

It consumes the engine's typed events (:func:`athena.engine.run_graph`) and hands them on:
each event becomes a wire event in an :class:`~athena.runs.sinks.EventSink`; the run's progress
(entries and metadata) is made durable by a :class:`RunStore` when a checkpoint is due; the
run's end (finished, suspended, stopped, handed over) is the store's to record. Which store
and which sink is configuration: a worker's execution uses the database and the event log, an
inline ``?wait=true`` run an in-memory batch (:mod:`athena.services.inline_run`). Prompt and
agent runs are meant to be driven the same way, with stores of their own.

Checkpoints are group commits: before an impure node, after one, or once the batch of pure
nodes is ``batch_seconds`` old. The events of a batch go out after the checkpoint that covers
them. A store that cannot checkpoint (the inline batch) makes the driver stop the engine and
answer :data:`OVERFLOW`: the caller runs the execution the persisted way instead."""
from __future__ import annotations

import time
from typing import Any, Protocol

from athena.engine import (
    Graph, LoopProgress, NodeFinished, NodeStarted, Published, RunContext, RunFinished, RunState,
    RunStopped, RunSuspended, run_graph,
)
from athena.runs import wire
from athena.runs.sinks import EventSink

OVERFLOW = "overflow"  # the store cannot hold the run: run it another way (nothing was written)


class RunStore(Protocol):
    """Where a run's progress is kept and how its end is recorded."""

    def checkpoint(self, run: RunDriver) -> bool:
        """Make ``run.state`` and ``run.meta`` durable; False if this store cannot."""

    def suspend(self, run: RunDriver, event: RunSuspended) -> str:
        """The run waits (a timer, a child, a human): record it; the outcome's name."""

    def stop(self, run: RunDriver) -> str:
        """A stop was requested and the engine stopped at a node boundary."""

    def hand_over(self, run: RunDriver) -> str:
        """The process is shutting down: leave the run for another process to continue."""

    def finish(self, run: RunDriver, status: str, output: Any, error: str | None) -> str:
        """The run ended ``completed`` or ``failed``."""


class RunDriver:
    def __init__(self, store: RunStore, events: EventSink, *, state: RunState, meta: dict[str, Any],
                 batch_seconds: float, elapsed_before_ms: float = 0.0) -> None:
        self.store = store
        self.events = events
        self.state = state
        self.meta = meta
        self.batch_seconds = batch_seconds
        self.elapsed_before_ms = elapsed_before_ms
        self.clock_started = time.monotonic()
        self.last_checkpoint = self.clock_started
        self.impure_started: set[tuple[str, int | None]] = set()
        self.unsaved_effects = False  # an impure node finished since the last checkpoint

    # -- what the engine's context calls ---------------------------------------------------
    def should_stop(self) -> bool:
        return self.events.stop_requested()

    def publish(self, event: Published) -> None:
        """A node's live event (streamed tokens): out now, after any held events."""
        name, fields = wire.from_engine(event)
        self.events.emit_live(name, **fields)

    def _queue(self, event: NodeStarted | NodeFinished | LoopProgress) -> None:
        name, fields = wire.from_engine(event)
        self.events.queue(name, **fields)

    # -- the loop ----------------------------------------------------------------------------
    def drive(self, graph: Graph, ctx: RunContext) -> str:
        """Run the engine to its next stopping point; the outcome's name."""
        for event in run_graph(graph, ctx, self.state):
            if isinstance(event, NodeStarted):
                if not self._node_started(event):
                    return OVERFLOW
            elif isinstance(event, NodeFinished):
                self._node_finished(event)
            elif isinstance(event, LoopProgress):
                if not self._loop_progress(event):
                    return OVERFLOW
            elif isinstance(event, RunSuspended):
                return self.store.suspend(self, event)
            elif isinstance(event, RunStopped):
                return self.store.hand_over(self) if event.handoff else self.store.stop(self)
            elif isinstance(event, RunFinished):
                return self.store.finish(self, event.status, event.output, event.error)
        return "ended"

    def execution_time(self) -> int:
        """Milliseconds spent running, over every stretch of the run (documented as an integer)."""
        return round(self.elapsed_before_ms + (time.monotonic() - self.clock_started) * 1000)

    def checkpoint(self) -> bool:
        """The store's checkpoint of the state and metadata as they are now."""
        self.meta["execution_time"] = self.execution_time()
        if not self.store.checkpoint(self):
            return False
        self.last_checkpoint = time.monotonic()
        self.unsaved_effects = False
        return True

    def save_batch(self) -> bool:
        """The checkpoint, then the events of the batch (the database is never behind the log)."""
        if not self.checkpoint():
            return False
        self.events.flush()
        return True

    def checkpoint_due(self, pure: bool) -> bool:
        """Before an impure node, after one, or once the batch is ``batch_seconds`` old."""
        return (not pure or self.unsaved_effects
                or time.monotonic() - self.last_checkpoint >= self.batch_seconds)

    def _node_started(self, event: NodeStarted) -> bool:
        """One checkpoint covers the nodes finished so far together with the one that starts;
        one round trip logs their events. Nothing runs in between, so a crash loses at most the
        node in progress plus, within one batch, pure nodes (which simply run again)."""
        self.meta["running_node"] = event.node_id
        if not event.pure:
            self.impure_started.add((event.node_id, event.iteration))
        self._queue(event)
        return self.save_batch() if self.checkpoint_due(event.pure) else True

    def _node_finished(self, event: NodeFinished) -> None:
        """Counted now; written by the next checkpoint (the next node's start, or the end)."""
        entry = event.entry
        if (event.node_id, event.iteration) in self.impure_started:
            self.impure_started.discard((event.node_id, event.iteration))
            self.unsaved_effects = True
        meta = self.meta
        if entry["status"] in ("success", "error"):  # not skipped, not a suspension (counted when it ends)
            meta["processed_count"] = int(meta.get("processed_count") or 0) + 1
        if entry["status"] == "error":
            meta["error_count"] = int(meta.get("error_count") or 0) + 1
        meta["retry_count"] = int(meta.get("retry_count") or 0) + int(event.retries or 0)
        meta["running_node"] = None
        self._queue(event)

    def _loop_progress(self, event: LoopProgress) -> bool:
        """A for_each item finished: checkpoint the loop node's {"results", "next_index"} entry."""
        self.meta["loop_index"] = event.index
        self.meta["running_node"] = event.node_id
        self._queue(event)
        return self.save_batch() if self.checkpoint_due(pure=True) else True
