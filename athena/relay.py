"""The WebSocket relay loop: every event of one event-log stream after a cursor, in seq order.

One loop serves both the replay and the live part: ``XREAD`` from ``<cursor>-0`` returns at
once when entries exist and otherwise blocks for at most ``block_seconds``, so there is no
hand-over between "replay" and "live" where an event could be lost or sent twice. Between
reads the loop checks that the client is still connected, so a closed client frees its
thread within about one block. Every ``recheck_seconds`` of idle the channel's ``recheck``
re-validates the token and the access (and, for executions, notices a finish whose
``execution.finished`` event never reached the log)."""
from __future__ import annotations

import itertools
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from flask import Flask

from athena.eventlog import EventLog

NORMAL_CLOSURE = 1000


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
    ws.send(json.dumps(message, separators=(",", ":"), default=str))


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
    workspace: bool = False
    block_seconds: float = 1.0
    recheck_seconds: float = 30.0
    finish_grace_seconds: float = 2.0
    # Close (1000) right after sending an event with this name (execution channels).
    stop_event: str | None = None
    # Close once the cursor reached this seq (the log already holds the final event).
    end_seq: int | None = None
    # Close at this monotonic time (finished in the database, final event still missing).
    deadline: float | None = None
    final: dict[str, Any] | None = field(default=None, repr=False)
    # Events for which this returns False are skipped (the cursor still moves past them).
    visible: Callable[[dict[str, Any]], bool] | None = None

    def finish_within_grace(self, final: dict[str, Any] | None = None) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.finish_grace_seconds
            self.final = final

    def run(self) -> None:
        next_check = time.monotonic() + self.recheck_seconds
        while self.ws.connected:
            if self.end_seq is not None and self.cursor >= self.end_seq:
                return self._close()
            block = self.block_seconds
            if self.deadline is not None:
                block = min(block, self.deadline - time.monotonic())
            batch = self.log.wait_after(self.key, self.cursor, max(1, int(block * 1000)), self.workspace)
            for event in batch:
                self.cursor = event["seq"]
                if self.visible is not None and not self.visible(event):
                    continue
                send_json(self.ws, event)
                if self.stop_event is not None and event.get("event") == self.stop_event:
                    return self._close()
            if batch:
                continue  # still replaying: deadlines and rechecks wait until we are caught up
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
