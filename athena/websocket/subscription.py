"""A socket's subscription to one stream key of the hub (:mod:`athena.websocket.fanout`): the
bounded queue of the live entries after ``start``, which the hub thread fills and the socket's
thread drains (``get``), and the failures that end it (:class:`Overflowed`, :class:`HubUnavailable`).

Direct delivery (``WS_DIRECT_WRITE`` on, workspace feeds only). A socket whose thread is parked in
``Subscription.get`` with nothing queued may offer a ``direct`` writer: the hub thread then writes
the shared frames to that socket itself, without blocking (``MSG_DONTWAIT``), instead of waking
its thread; at 100 sockets that is one thread writing 100 frames rather than 100 threads each
taking the interpreter lock in turn. Anything it cannot finish (a full socket buffer, a visibility
not known yet) goes the queued way, and a half-written batch is finished by the socket's own thread
before anything else, so the order and the exactly-once guarantee of the hub are unchanged."""
from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Callable

from athena.websocket.frames import SharedEvent

if TYPE_CHECKING:
    from athena.websocket.fanout import Hub


class Overflowed(Exception):
    """The socket fell more than its queue limit behind the log."""


class HubUnavailable(RuntimeError):
    """The hub could not read the log (e.g. Redis down for longer than ``fail_after``)."""


class Subscription:
    """A socket's queue of the live entries of one key: exactly those after ``start``."""

    def __init__(self, hub: Hub, key: str, start: int, limit: int) -> None:
        self.hub, self.key, self.start, self.limit = hub, key, start, limit
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[SharedEvent] = deque()
        self._overflowed = False
        self._failure: str | None = None
        # Direct delivery: while the socket's thread is parked in get() with nothing queued, the
        # hub thread itself hands the events to ``direct`` (which writes them without blocking)
        # instead of waking that thread: one thread writes to many idle sockets. ``direct``
        # returns "sent", "partial" (the socket thread must finish the write: it is woken) or
        # "declined" (queue them as usual).
        self.direct: Callable[[list[SharedEvent]], str] | None = None
        self._parked = False

    def offer(self, events: list[SharedEvent]) -> bool:
        """Hub side (hub lock held): queue ``events``, or fail on overflow. Never blocks for long."""
        with self._cond:
            if self._overflowed or self._failure is not None:
                return False
            if self._parked and not self._items and self.direct is not None:
                try:
                    outcome = self.direct(events)  # the socket thread cannot leave get() meanwhile
                except Exception:  # noqa: BLE001 - e.g. the socket closed: its own thread finds out
                    outcome = "declined"
                if outcome != "declined":
                    self.hub.direct_deliveries += 1
                    if outcome == "partial":
                        self._cond.notify()
                    return True
            if len(self._items) + len(events) > self.limit:
                self._overflowed = True
                self._items.clear()  # the socket ends: free the memory now
            else:
                self._items.extend(events)
            self._cond.notify()
            return not self._overflowed

    def fail(self, reason: str) -> None:
        with self._cond:
            self._failure = reason
            self._cond.notify()

    def get(self, timeout: float) -> list[SharedEvent]:
        """The entries queued since the last call, waiting up to ``timeout`` s for one.

        Raises :class:`Overflowed` at once, :class:`HubUnavailable` once the queue is drained."""
        with self._cond:
            if not self._items and not self._overflowed and self._failure is None:
                self._parked = True
                try:
                    self._cond.wait(timeout)
                finally:
                    self._parked = False
            if self._overflowed:
                raise Overflowed(f"more than {self.limit} events behind")
            if self._items:
                items = list(self._items)
                self._items.clear()
                return items
            failure = self._failure
        if failure is not None:
            raise HubUnavailable(failure)
        self.hub.ensure_running()  # idle: revive a reader thread that died (positions are intact)
        return []

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
