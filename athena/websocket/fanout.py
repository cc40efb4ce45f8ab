"""One shared reader per process for the event-log streams that WebSockets follow (the hub):
one background thread runs one ``XREAD`` over every watched stream key (each from the hub's
position in it), decodes each entry once into a :class:`SharedEvent` (JSON text and frame made
once) and appends it to the bounded queue of every subscription of that key; the socket threads
only filter and send (before, each socket ran its own XREAD, decode and encode).

Gap-free hand-over. ``subscribe`` registers under the hub lock and records the key's hub
position at that instant as ``Subscription.start``. A read for a key returns exactly the entries
after the position it was issued from; they are appended to the queues of the subscriptions
registered at that moment, and the position advances to the last of them, under that same lock
(a read issued before the key was dropped or re-created is discarded). So a subscription's queue
receives exactly the entries after ``start``, in order. The socket sends ``(its cursor, start]``
from the log itself (``XRANGE``), then drains its queue, skipping the seqs it already sent. A
new key starts at a position the socket knows to exist in the log, never past its end.

Failures never drop silently: a Redis error leaves the positions as they are, the hub reconnects
and reads on. If it cannot read for ``fail_after`` seconds, every subscription fails with
:class:`HubUnavailable` (the socket closes 1011; the client resumes with ``after_seq``). A queue
that would grow past its ``limit`` fails with :class:`Overflowed` (the socket closes 1013); the
hub never blocks on a socket. When the last subscription of a key ends the hub stops reading it;
the thread ends when no key is left and is started again by the next ``subscribe``, as is a
reader thread that died. A hub belongs to the process that created it (safe after fork).

Direct delivery (the hub thread writing to a parked socket itself) is described in
:mod:`athena.websocket.subscription`."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError, ResponseError

from athena.runs.eventlog import EventLog
from athena.redis_client import get_redis
from athena.websocket.frames import SharedEvent
from athena.websocket.subscription import HubUnavailable, Overflowed, Subscription

__all__ = ["DEFAULT_QUEUE_LIMIT", "Hub", "HubUnavailable", "Overflowed", "Subscription", "hub_for"]

logger = logging.getLogger(__name__)

EXTENSION = "athena_fanout"
READ_COUNT = 1000  # entries per key per XREAD
DEFAULT_QUEUE_LIMIT = 5000  # events queued for one socket before it is closed as too slow
DEFAULT_FAIL_AFTER = 10.0  # seconds without a successful read before subscriptions fail
WAKE_TRIES = 200  # CLIENT UNBLOCK attempts while the reader is about to block without a new key


class _Channel:
    """A watched key: the hub's position in it and its subscriptions."""

    def __init__(self, key: str, workspace: bool, position: int) -> None:
        self.key, self.workspace, self.position = key, workspace, position
        self.subscribers: dict[int, Subscription] = {}


Plan = dict[str, tuple[_Channel, int]]


class Hub:
    """The shared reader of one process (see the module docstring); get it with :func:`hub_for`."""

    def __init__(self, redis: Redis, block_seconds: float = 1.0, fail_after: float = DEFAULT_FAIL_AFTER) -> None:
        self.redis = redis  # the app's client: CLIENT UNBLOCK goes through its pool
        self.block_ms = max(1, int(block_seconds * 1000))
        self.fail_after = fail_after
        self.pid = os.getpid()
        self.reads = 0  # XREAD replies handled (for ops and tests)
        self.direct_deliveries = 0  # batches the hub thread wrote to a parked socket itself
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._generation = 0  # bumped whenever a key is added or dropped
        self._thread: threading.Thread | None = None
        self._waiting: tuple[int, int] | None = None  # (client id, generation) of the XREAD in flight

    # Subscribers' side
    def subscribe(self, key: str, position: int, workspace: bool = False,
                  limit: int = DEFAULT_QUEUE_LIMIT) -> Subscription:
        """Queue every entry of ``key`` after the returned subscription's ``start``.

        ``position`` is used only when nobody watches ``key`` yet: it must be a seq that exists in
        the log (or 0), so that no entry after it is skipped; the caller covers up to ``start``."""
        with self._lock:
            channel = self._channels.get(key)
            new = channel is None
            if channel is None:
                channel = self._channels[key] = _Channel(key, workspace, position)
                self._generation += 1
            subscription = Subscription(self, key, channel.position, limit)
            channel.subscribers[id(subscription)] = subscription
            self._ensure_thread()
            generation = self._generation
        if new:
            self._wake(generation)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            channel = self._channels.get(subscription.key)
            if channel is not None and channel.subscribers.pop(id(subscription), None) is subscription:
                if not channel.subscribers:
                    self._drop(channel)

    def ensure_running(self) -> None:
        with self._lock:
            if self._channels:
                self._ensure_thread()

    def keys(self) -> list[str]:
        """The keys being read now."""
        with self._lock:
            return list(self._channels)

    def subscriber_count(self, key: str) -> int:
        with self._lock:
            channel = self._channels.get(key)
            return len(channel.subscribers) if channel else 0

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def _ensure_thread(self) -> None:  # hub lock held
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="athena-fanout", daemon=True)
            self._thread.start()

    def _drop(self, channel: _Channel) -> None:  # hub lock held
        del self._channels[channel.key]
        self._generation += 1

    def _wake(self, generation: int) -> None:
        """Make an XREAD blocked without the newest key return at once, so it reads that key now."""
        for _ in range(WAKE_TRIES):
            with self._lock:
                waiting = self._waiting
            if waiting is None or waiting[1] >= generation or not waiting[0]:
                return  # not blocked, or blocked on a read that includes the key (or cannot wake it)
            try:
                if self.redis.client_unblock(waiting[0]):
                    return
            except RedisError as exc:
                logger.debug("event-log hub: CLIENT UNBLOCK failed (%s)", exc)
                return  # the reader's block timeout still bounds the delay
            time.sleep(0.0005)  # the XREAD has not reached Redis yet

    # The reader thread
    def _run(self) -> None:
        me = threading.current_thread()
        link = _Link(self.redis, self.block_ms / 1000 + 10)  # this thread's own connection
        failing_since: float | None = None
        delay = 0.05
        try:
            while True:
                try:
                    conn, client_id = link.open()
                    with self._lock:
                        if self._thread is not me:
                            return
                        if not self._channels:  # nobody watches: end (the next subscribe starts one)
                            self._thread = None
                            return
                        plan: Plan = {key: (ch, ch.position) for key, ch in self._channels.items()}
                        self._waiting = (client_id, self._generation)
                    reply = self._xread(conn, plan)
                except (RedisError, OSError) as exc:
                    with self._lock:
                        self._waiting = None
                    link.close()
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since >= self.fail_after:
                        logger.error("event-log hub: no read for %.1f s (%s): ending its sockets",
                                     now - failing_since, exc)
                        self._fail_all(f"event log unavailable: {exc}")
                        failing_since = None
                    else:
                        logger.warning("event-log hub: read failed (%s), retrying", exc)
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                failing_since, delay = None, 0.05
                self._deliver(plan, reply)
        except Exception:  # noqa: BLE001 - a bug: fail every socket rather than drop events
            logger.exception("event-log hub failed")
            self._fail_all("event-log hub failed")
        finally:
            with self._lock:
                if self._thread is me:
                    self._thread, self._waiting = None, None
            link.close()

    def _deliver(self, plan: Plan, reply: list[tuple[str, list[Any]]]) -> None:
        decoded = [(key, [SharedEvent(e) for e in EventLog._decode(entries, plan[key][0].workspace)])
                   for key, entries in reply if key in plan]  # decoded once, outside the lock
        with self._lock:
            self._waiting = None
            self.reads += 1
            for key, events in decoded:
                channel, position = plan[key]
                if not events or self._channels.get(key) is not channel or channel.position != position:
                    continue  # dropped (or re-created) while the read was in flight
                channel.position = events[-1].seq
                for ident, subscription in list(channel.subscribers.items()):
                    if not subscription.offer(events):
                        del channel.subscribers[ident]  # overflowed: its socket closes
                if not channel.subscribers:
                    self._drop(channel)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            for channel in self._channels.values():
                for subscription in channel.subscribers.values():
                    subscription.fail(reason)
            self._channels.clear()
            self._generation += 1

    def _xread(self, conn: Any, plan: Plan) -> list[tuple[str, list[Any]]]:
        keys = list(plan)
        conn.send_command("XREAD", "COUNT", READ_COUNT, "BLOCK", self.block_ms, "STREAMS",
                          *keys, *[f"{plan[key][1]}-0" for key in keys])
        reply = conn.read_response()
        if not reply:
            return []  # timed out, or woken by CLIENT UNBLOCK
        items = reply.items() if isinstance(reply, dict) else reply  # RESP3 / RESP2
        out = []
        for key, entries in items:
            key = key.decode() if isinstance(key, bytes) else key
            out.append((key, [(entry_id, fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2])))
                              for entry_id, fields in entries]))
        return out


class _Link:
    """A reader thread's own connection (a blocking XREAD holds it) and its ``CLIENT ID``."""

    def __init__(self, redis: Redis, socket_timeout: float) -> None:
        self.redis, self.socket_timeout = redis, socket_timeout
        self.conn: Any = None
        self.client_id = 0

    def open(self) -> tuple[Any, int]:
        if self.conn is None:
            pool = self.redis.connection_pool
            # no health-check PING on the reader; a dead peer cannot hang it past socket_timeout
            conn = pool.connection_class(**{**pool.connection_kwargs, "health_check_interval": 0,
                                            "socket_timeout": self.socket_timeout})
            try:
                conn.connect()
                conn.send_command("CLIENT", "ID")
                try:
                    self.client_id = int(conn.read_response())
                except ResponseError as exc:  # e.g. an ACL without CLIENT: new keys wait for a read's end
                    logger.warning("event-log hub: CLIENT ID refused (%s): no early wake-up", exc)
                    self.client_id = 0
            except BaseException:
                conn.disconnect()
                raise
            self.conn = conn
        return self.conn, self.client_id

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass


_create_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _create_lock
    _create_lock = threading.Lock()  # a thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def hub_for(app: Flask) -> Hub:
    """This process's hub of ``app`` (created on first use; a fresh one in a forked child)."""
    hub = app.extensions.get(EXTENSION)
    if hub is None or hub.pid != os.getpid():
        with _create_lock:
            hub = app.extensions.get(EXTENSION)
            if hub is None or hub.pid != os.getpid():
                hub = Hub(get_redis(app), block_seconds=app.config["WS_POLL_SECONDS"],
                          fail_after=float(app.config.get("WS_HUB_FAIL_SECONDS", DEFAULT_FAIL_AFTER)))
                app.extensions[EXTENSION] = hub
    return hub
