"""Multi-process WebSocket reader for the fan-out benchmark (scenario 4).

Why: one Python thread per socket (websocket-client) in the bench process made the *client*
the bottleneck at 100 sockets: the threads queue on the GIL, so the measured "latency" was
mostly the bench waiting for its turn, not the server. Here P worker processes each serve a
share of the sockets with ONE thread and a ``selectors`` loop over raw non-blocking sockets,
with a minimal frame parser (:mod:`bench.wsframes_client`). The hot loop does one ``recv`` +
one ``time.time()`` per readable socket and keeps each message as (receipt time, raw payload);
the JSON is decoded only after the run (except ``execution.finished``, needed to know when to
stop), so the per-message cost while the clock runs is a few microseconds.

Protocol between the parent and a worker (one duplex ``Pipe`` each):

* worker -> parent ``("ready", [last_seq per socket])`` once every socket read its snapshot,
  or ``("error", text)`` if a handshake/snapshot failed;
* parent -> worker ``("stop", expected_uuids)`` once triggering is done: the worker closes each
  socket as soon as it has ``execution.finished`` of every expected uuid (or at the deadline);
* worker -> parent ``("result", [ConnResult...])`` as plain tuples, then it exits.

Everything is bounded by an absolute ``time.monotonic()`` deadline (CLOCK_MONOTONIC is
system-wide on Linux, so it means the same in every process)."""
from __future__ import annotations

import json
import multiprocessing
import selectors
import socket
import time
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from bench.wsframes_client import Conn, handshake

FINISHED = "execution.finished"
FINISHED_BYTES = FINISHED.encode()
RECV_BYTES = 1 << 16


class Message(NamedTuple):
    """What scenario 4 keeps of one event (``None`` when the event lacks the field)."""

    received: float  # time.time() right after the recv() that completed the message
    seq: int | None
    event: str | None
    execution_uuid: str | None
    ts: str | None


class ConnResult(NamedTuple):
    last_seq: int               # the snapshot's last_seq
    messages: list[Message]     # after the snapshot, in arrival order
    finished: set[str]          # execution uuids whose execution.finished arrived
    error: str | None


# ---------------------------------------------------------------------------- worker process
def _finished_uuid(payload: bytes) -> str | None:
    if FINISHED_BYTES not in payload:
        return None
    event = json.loads(payload)
    return event.get("execution_uuid") if event.get("event") == FINISHED else None


def _decode(conn: Conn) -> ConnResult:
    messages = []
    for received, payload in conn.raw:
        try:
            event = json.loads(payload)
        except ValueError:
            conn.error = conn.error or f"not JSON: {payload[:80]!r}"
            continue
        seq = event.get("seq")
        messages.append(Message(received, int(seq) if seq is not None else None, event.get("event"),
                                event.get("execution_uuid"), event.get("ts")))
    return ConnResult(conn.last_seq or 0, messages, conn.finished, conn.error)


def _handle_snapshot(conn: Conn, payload: bytes) -> None:
    try:
        first = json.loads(payload)
    except ValueError:
        first = {}
    if not isinstance(first, dict) or first.get("event") != "snapshot":
        conn.fail(f"no snapshot: {payload[:200]!r}")
    else:
        conn.last_seq = int(first.get("last_seq") or 0)


def _absorb(conn: Conn, received: float, expected: set[str] | None) -> bool:
    """Handle the messages completed in ``conn.buffer``; True once the socket is done (closed,
    broken, or every expected ``execution.finished`` arrived)."""
    for payload in conn.feed():
        if conn.last_seq is None:
            _handle_snapshot(conn, payload)
            continue
        conn.raw.append((received, payload))
        uuid = _finished_uuid(payload)
        if uuid is not None:
            conn.finished.add(uuid)
            if expected is not None and expected <= conn.finished:
                return True  # like a thread that returns: the rest is never read
    return not conn.open


def worker_main(url: str, count: int, control: Connection, deadline: float, connect_timeout: float) -> None:
    """Serve ``count`` sockets to ``url`` until told to stop (see the module docstring)."""
    conns: list[Conn] = []
    try:
        for _ in range(count):
            conns.append(Conn(*handshake(url, connect_timeout)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        control.send(("error", f"connect: {exc!r}"))
        for conn in conns:
            conn.close()
        return
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        if conn.buffer:  # frames that came with the 101 answer
            _absorb(conn, time.time(), None)
    selector.register(control, selectors.EVENT_READ, None)
    expected: set[str] | None = None  # set by "stop"
    ready_sent = False
    snapshot_deadline = time.monotonic() + connect_timeout
    recv, now, select = socket.socket.recv, time.time, selector.select
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for key, _ in select(timeout=min(0.5, remaining)):
            conn: Conn | None = key.data
            if conn is None:  # the parent: "stop", or it went away
                try:
                    command = control.recv()
                except (EOFError, OSError):
                    deadline = 0.0
                    break
                if command[0] == "stop":
                    expected = set(command[1])
                    for other in conns:
                        if other.open and other.last_seq is not None and expected <= other.finished:
                            _retire(selector, other)
                continue
            if not conn.open:
                continue
            try:
                chunk = recv(conn.sock, RECV_BYTES)
            except BlockingIOError:
                continue
            except OSError as exc:
                conn.fail(f"recv: {exc!r}")
                _retire(selector, conn)
                continue
            received = now()
            if chunk:
                conn.buffer = conn.buffer + chunk if conn.buffer else chunk
            else:
                conn.fail("connection closed without a close frame")
            if _absorb(conn, received, expected):
                _retire(selector, conn)
        if not ready_sent:
            if all(c.last_seq is not None for c in conns):
                control.send(("ready", [c.last_seq for c in conns]))
                ready_sent = True
            elif any(c.error for c in conns) or time.monotonic() > snapshot_deadline:
                control.send(("error", next((c.error for c in conns if c.error), "no snapshot in time")))
                break
        elif expected is not None and not any(c.open for c in conns):
            break
    for conn in conns:
        conn.close()
    selector.close()
    if ready_sent:
        try:
            control.send(("result", [_decode(conn) for conn in conns]))
        except OSError:
            pass


def _retire(selector: selectors.BaseSelector, conn: Conn) -> None:
    try:
        selector.unregister(conn.sock)
    except (KeyError, ValueError):
        pass
    conn.close()


# ---------------------------------------------------------------------------- parent side
class FanoutReader:
    """``clients`` sockets to one URL, split over ``processes`` worker processes.

    ``start()`` returns once every socket has its snapshot; ``finish(expected)`` returns one
    :class:`ConnResult` per socket (in a stable order)."""

    def __init__(self, url: str, clients: int, processes: int | None = None, max_seconds: float = 120.0,
                 connect_timeout: float = 15.0) -> None:
        from bench.client import check_loopback

        check_loopback(url.replace("ws://", "http://", 1))
        self.url = url
        # One process per 100 sockets (at most 4): on 2 cores, more reader processes only take
        # CPU from the server under test (measured: 100 sockets, 1 process p50 4.1-4.8 ms, 4: 4.6-5.1).
        self.processes = max(1, min(processes or min(4, -(-clients // 100)), clients))
        self.deadline = time.monotonic() + max_seconds
        self.connect_timeout = connect_timeout
        base, extra = divmod(clients, self.processes)
        self.split = [base + (1 if i < extra else 0) for i in range(self.processes)]
        self.workers: list[tuple[Any, Connection]] = []
        self.last_seqs: list[list[int]] = []  # per worker, per socket

    def start(self) -> list[int]:
        """Spawn the workers, wait until every socket read its snapshot; the last_seq of each."""
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        for count in self.split:
            parent_end, child_end = context.Pipe(duplex=True)
            process = context.Process(target=worker_main, daemon=True, name="wsreader",
                                      args=(self.url, count, child_end, self.deadline, self.connect_timeout))
            process.start()
            child_end.close()
            self.workers.append((process, parent_end))
        for process, pipe in self.workers:
            reply = self._receive(pipe, min(self.deadline, time.monotonic() + self.connect_timeout + 30))
            if reply is None or reply[0] != "ready":
                self.close()
                raise RuntimeError(f"wsreader {process.pid}: {reply[1] if reply else 'no answer'}")
            self.last_seqs.append(reply[1])
        return [seq for seqs in self.last_seqs for seq in seqs]

    def pids(self) -> list[int]:
        return [process.pid for process, _ in self.workers if process.pid is not None]

    def finish(self, expected: set[str]) -> list[ConnResult]:
        """Tell the workers triggering is over; collect their results (by the deadline)."""
        for _, pipe in self.workers:
            try:
                pipe.send(("stop", sorted(expected)))
            except OSError:
                pass
        results: list[ConnResult] = []
        for (process, pipe), last_seqs in zip(self.workers, self.last_seqs):
            reply = self._receive(pipe, self.deadline + 10)
            if reply is not None and reply[0] == "result":
                results.extend(reply[1])
            else:  # counted as lost events and errors, like a listener thread that died
                results.extend(ConnResult(seq, [], set(), f"wsreader {process.pid}: no result") for seq in last_seqs)
        self.close()
        return results

    @staticmethod
    def _receive(pipe: Connection, until: float) -> Any:
        if not pipe.poll(max(0.0, until - time.monotonic())):
            return None
        try:
            return pipe.recv()
        except (EOFError, OSError):
            return None

    def close(self) -> None:
        """Closing its pipe makes a worker stop (EOF); terminate it if it does not."""
        for _, pipe in self.workers:
            pipe.close()
        for process, _ in self.workers:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self.workers = []
