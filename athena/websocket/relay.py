"""The WebSocket relay loop: every event of one event-log stream after a cursor, in seq order.

The socket first sends what the log holds after its cursor (``XRANGE`` pages: the replay), then
subscribes to the process's shared reader (:mod:`athena.websocket.fanout`), replays the few
entries between its cursor and the subscription's ``start`` (logged while it subscribed) and then
sends the subscription's queue, which holds exactly the entries after ``start``, skipping seqs
already sent: no event is lost or sent twice across the hand-over. The queue wait is bounded by
``block_seconds``, so a closed client frees its thread within about that long. Every
``recheck_seconds`` of idle the channel's ``recheck`` re-validates the token and the access (and,
for executions, notices a finish whose ``execution.finished`` event never reached the log).
How the events are written to the socket is :mod:`athena.websocket.writer`'s job.

A socket more than its queue limit behind is closed with 1013 (its client reconnects with
``after_seq`` = the last seq it got); a hub that cannot read the log ends its sockets with 1011."""
from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from flask import Flask

from athena.runs.eventlog import EventLog
from athena.websocket.fanout import DEFAULT_QUEUE_LIMIT, Hub
from athena.websocket.frames import SharedEvent, encode
from athena.websocket.subscription import Overflowed, Subscription
from athena.websocket.writer import writer_for

NORMAL_CLOSURE = 1000
TRY_AGAIN_LATER = 1013  # the socket fell too far behind: reconnect with after_seq
REPLAY_PAGE = 1000


class Refused(Exception):
    """Refuse (or end) a socket with an application close code (4xxx) and a message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Finished:
    """``recheck`` verdict: the execution is finished; send ``final`` if no finish event comes."""

    final: dict[str, Any]


Recheck = Callable[[], "Finished | None"]  # raises Refused to end the socket


def send_json(ws: Any, message: dict[str, Any]) -> None:
    ws.send(encode(message))


def refuse(ws: Any, refused: Refused) -> None:
    """The error as a JSON message first (browsers see it), then the close code."""
    send_json(ws, {"event": "error", "code": refused.code, "message": refused.message})
    ws.close(reason=refused.code, message=refused.message)


@dataclass
class Relay:
    ws: Any
    log: EventLog
    key: str
    cursor: int
    recheck: Recheck
    hub: Hub
    # A seq known to be in the log (the snapshot's last_seq): where the hub may start reading a
    # key nobody watches yet (never past the log's end, so no later entry can be skipped).
    head: int = 0
    workspace: bool = False
    block_seconds: float = 1.0
    recheck_seconds: float = 30.0
    finish_grace_seconds: float = 2.0
    queue_limit: int = DEFAULT_QUEUE_LIMIT
    # Close (1000) right after sending an event with this name (execution channels).
    stop_event: str | None = None
    # Close once the cursor reached this seq (the log already holds the final event).
    end_seq: int | None = None
    # Close at this monotonic time (finished in the database, final event still missing).
    deadline: float | None = None
    final: dict[str, Any] | None = field(default=None, repr=False)
    # Events for which this returns False are skipped (the cursor still moves past them).
    visible: Callable[[dict[str, Any]], bool] | None = None
    # WS_DIRECT_WRITE: shared frames straight onto the socket, by the hub thread while this
    # socket's thread is parked (athena.websocket.writer); off: the library's ws.send() only.
    direct_write: bool = True

    def finish_within_grace(self, final: dict[str, Any] | None = None) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.finish_grace_seconds
            self.final = final

    def __post_init__(self) -> None:
        self.writer = writer_for(self.ws, self.direct_write)

    def run(self) -> None:
        if self._replay(None) or self._reached_end():
            return
        position = min(self.cursor, self.head)
        with self.hub.subscribe(self.key, position, self.workspace, self.queue_limit) as subscription:
            if subscription.start > self.cursor and self._replay(subscription.start):
                return
            try:
                self._live(subscription)
            except Overflowed as exc:
                refuse(self.ws, Refused(TRY_AGAIN_LATER, f"Too slow ({exc}): reconnect with "
                                                         f"after_seq={self.cursor}"))

    def _replay(self, upto: int | None) -> bool:
        """Send the logged events after the cursor, to the end (or at least up to ``upto``).
        True when the socket is done."""
        while self.ws.connected and (upto is None or self.cursor < upto):
            batch = self.log.read_after(self.key, self.cursor, count=REPLAY_PAGE, workspace=self.workspace)
            if batch:
                self.head = max(self.head, batch[-1]["seq"])
                if self._deliver([SharedEvent(data) for data in batch]):
                    return True
            if len(batch) < REPLAY_PAGE:
                break
        return not self.ws.connected

    def _live(self, subscription: Subscription) -> None:
        next_check = time.monotonic() + self.recheck_seconds
        if self.writer.direct and self.workspace and self.stop_event is None and self.end_seq is None:
            subscription.direct = self._direct  # a workspace feed: nothing but relaying to do
        while self.ws.connected:
            if self._reached_end():
                return
            block = self.block_seconds
            if self.deadline is not None:
                block = min(block, self.deadline - time.monotonic())
            batch = subscription.get(max(0.001, block))
            if self._deliver(batch):
                return
            if batch:
                continue  # busy: deadlines and rechecks wait until we are idle
            if self.deadline is not None and time.monotonic() >= self.deadline:
                if self.final is not None:
                    send_json(self.ws, self.final)
                return self._close()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.recheck_seconds
                try:
                    verdict = self.recheck()
                except Refused as refused:
                    return refuse(self.ws, refused)
                if isinstance(verdict, Finished):
                    self.finish_within_grace(verdict.final)

    def _direct(self, events: list[SharedEvent]) -> str:
        """Called by the hub thread while this socket's thread is parked (see
        ``Subscription.direct``): filter and write ``events`` now, or decline. Declines an event
        whose visibility is not known yet (finding out takes a query: the socket thread's job)."""
        if self.deadline is not None or not self.ws.connected:
            return "declined"
        cached = getattr(self.visible, "cached", None)
        if self.visible is not None and cached is None:
            return "declined"
        out, cursor = [], self.cursor
        for event in events:
            if event.seq <= cursor:
                continue
            cursor = event.seq
            if cached is not None:
                verdict = cached(event.data)
                if verdict is None:
                    return "declined"
                if not verdict:
                    continue
            out.append(event)
        outcome = self.writer.send_now(out)
        if outcome != "declined":
            self.cursor = cursor
        return outcome

    def _deliver(self, events: list[SharedEvent]) -> bool:
        """Send the visible ``events`` after the cursor (seqs already sent are skipped: replay and
        queue may overlap). True when the stop event was among them (the socket is then closed)."""
        out: list[SharedEvent] = []
        stop = False
        for event in events:
            if event.seq <= self.cursor:
                continue
            self.cursor = event.seq
            if self.visible is not None and not self.visible(event.data):
                continue
            out.append(event)
            if self.stop_event is not None and event.data.get("event") == self.stop_event:
                stop = True
                break
        self.writer.send(out)
        if stop:
            self._close()
        return stop

    def _reached_end(self) -> bool:
        if self.end_seq is not None and self.cursor >= self.end_seq:
            self._close()
            return True
        return False

    def _close(self) -> None:
        if self.ws.connected:
            self.ws.close(reason=NORMAL_CLOSURE)


class RelayRegistry:
    """The sockets being served right now, with their threads (for ops and for tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._active: dict[int, tuple[str, threading.Thread]] = {}

    @contextmanager
    def track(self, channel: str) -> Iterator[None]:
        ident = next(self._ids)
        with self._lock:
            self._active[ident] = (channel, threading.current_thread())
        try:
            yield
        finally:
            with self._lock:
                del self._active[ident]

    def threads(self, prefix: str = "") -> list[threading.Thread]:
        """Threads serving channels whose name starts with ``prefix`` (``execution:<uuid>``...)."""
        with self._lock:
            return [thread for name, thread in self._active.values() if name.startswith(prefix)]

    def count(self, prefix: str = "") -> int:
        return len(self.threads(prefix))


def registry_for(app: Flask) -> RelayRegistry:
    return app.extensions.setdefault("athena_realtime", RelayRegistry())
