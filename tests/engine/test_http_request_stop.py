"""http_request: a stop (or the overall timeout) is honoured while the exchange is blocked.

Real sockets on 127.0.0.1, no mocks: a server that accepts the request and never answers,
one that sends headers and then nothing, one that trickles header bytes forever, and a
listener whose accept queue is full (so ``connect()`` hangs).  The node runs through the
engine in a thread; the bounds below (20 s joins against 60 s of server silence and a 60 s
node timeout) are safety nets, not timing assertions.
"""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from athena.engine import RunFinished, RunStopped
from athena.engine.errors import StopRequested
from athena.engine.interrupt import SocketCanceller, run_interruptible
from tests.support.servers import http_url, serve_http, wait_for

from ._engine_helpers import edge, execute, finished, node, started

SETTINGS = {"http_allowlist": ["127.0.0.1"], "http_max_response_bytes": 100_000,
            "http_default_timeout": 60}
SILENCE = 60.0  # how long the slow routes stay silent at most
JOIN = 20.0  # generous bound for the node to return after a stop


class Target:
    """Per-test server state: requests seen, and whether the client hung up."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, str]] = []
        self.received = threading.Event()
        self.hung_up = threading.Event()
        self.release = threading.Event()
        self.url = ""

    def record(self, method: str, path: str, body: str) -> None:
        with self.lock:
            self.requests.append((method, path, body))
        self.received.set()


def make_handler(target: Target) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib
            pass

        def _wait_for_hangup(self) -> None:
            """Send nothing; return when the client closes (or at release / SILENCE)."""
            end = time.monotonic() + SILENCE
            while not target.release.is_set() and time.monotonic() < end:
                ready, _, _ = select.select([self.connection], [], [], 0.05)
                if ready:
                    try:
                        data = self.connection.recv(1024)
                    except OSError:
                        data = b""
                    if not data:
                        target.hung_up.set()
                        return

        def _trickle(self) -> None:
            """Headers that never end: one byte every 100 ms."""
            end = time.monotonic() + SILENCE
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
                while not target.release.is_set() and time.monotonic() < end:
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                target.hung_up.set()

        def _route(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size).decode() if size else ""
            target.record(self.command, self.path, body)
            if self.path == "/silent":
                self._wait_for_hangup()
            elif self.path == "/headers-then-silent":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"partial")
                self.wfile.flush()
                self._wait_for_hangup()
            elif self.path == "/trickle":
                self._trickle()
            else:
                data = json.dumps({"method": self.command, "path": self.path,
                                   "body": body}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            self.close_connection = True

        do_GET = do_POST = _route

    return Handler


@pytest.fixture
def target() -> Iterator[Target]:
    state = Target()
    server = serve_http(make_handler(state))
    state.url = http_url(server)
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def stop_after(event: threading.Event, delay: float = 0.2) -> Callable[[], bool]:
    """A should_stop that turns True ``delay`` seconds after ``event`` (e.g. request seen)."""
    seen: list[float] = []

    def should_stop() -> bool:
        if not event.is_set():
            return False
        if not seen:
            seen.append(time.monotonic())
        return time.monotonic() - seen[0] >= delay

    return should_stop


def run_node_in_thread(url: str, should_stop: Callable[[], bool] | None = None,
                       **parameters: Any) -> tuple[list[Any], Any]:
    """Run manual -> http_request("h") in a thread; fail if it does not return within JOIN."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            kwargs: dict[str, Any] = {"services": {"settings": SETTINGS}}
            if should_stop is not None:
                kwargs["should_stop"] = should_stop
            box["result"] = execute([node("t", "manual"), node("h", "http_request", url=url,
                                                               **parameters)],
                                    [edge("t", "h")], **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="test-node-runner", daemon=True)
    thread.start()
    thread.join(JOIN)
    assert not thread.is_alive(), "the http_request node did not return after the stop"
    if "error" in box:
        raise box["error"]
    return box["result"]


def assert_stopped_in_node(events: list[Any], state: Any) -> None:
    """The engine's convention for a node that raised StopRequested: the run ends with
    RunStopped, the node started but never finished (no entry: it reruns on a resume)."""
    assert isinstance(events[-1], RunStopped)
    assert "h" in started(events) and "h" not in finished(events)
    assert "h" not in state.entries


def helper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "http-h" and t.is_alive()]


def test_stop_while_waiting_for_headers(target: Target) -> None:
    events, state = run_node_in_thread(f"{target.url}/silent", stop_after(target.received),
                                       timeout=60)
    assert_stopped_in_node(events, state)
    assert target.requests == [("GET", "/silent", "")]  # sent once, never re-sent
    assert not helper_threads()
    wait_for(target.hung_up.is_set, timeout=10, message="the client to close its socket")


def test_stop_while_waiting_for_headers_of_a_post_sends_it_once(target: Target) -> None:
    events, state = run_node_in_thread(f"{target.url}/silent", stop_after(target.received),
                                       method="POST", body={"side": "effect"}, timeout=60)
    assert_stopped_in_node(events, state)
    assert target.requests == [("POST", "/silent", '{"side": "effect"}')]
    wait_for(target.hung_up.is_set, timeout=10, message="the client to close its socket")


def test_stop_while_waiting_for_the_body(target: Target) -> None:
    events, state = run_node_in_thread(f"{target.url}/headers-then-silent",
                                       stop_after(target.received), timeout=60)
    assert_stopped_in_node(events, state)
    assert len(target.requests) == 1
    assert not helper_threads()
    wait_for(target.hung_up.is_set, timeout=10, message="the client to close its socket")


def test_stop_while_connecting() -> None:
    """A listener whose accept queue is full drops SYNs, so connect() blocks."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):  # fill the accept queue; later SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        at_once = threading.Event()
        at_once.set()
        events, state = run_node_in_thread(f"http://127.0.0.1:{port}/", stop_after(at_once, 0.3),
                                           timeout=60)
        assert_stopped_in_node(events, state)
        assert not helper_threads()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_timeout_still_fires_while_waiting_for_headers(target: Target) -> None:
    events, state = run_node_in_thread(f"{target.url}/silent", timeout=0.5)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "failed"
    entry = state.entries["h"]
    assert entry["status"] == "error"
    assert entry["error"] == "request to 127.0.0.1 timed out after 0.5 s"
    assert len(target.requests) == 1
    wait_for(target.hung_up.is_set, timeout=10, message="the client to close its socket")


def test_overall_timeout_applies_to_headers_that_trickle(target: Target) -> None:
    """Each read gets a byte within the read timeout; the node's total timeout still ends it."""
    events, state = run_node_in_thread(f"{target.url}/trickle", timeout=1)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "failed"
    assert state.entries["h"]["error"] == "request to 127.0.0.1 timed out after 1 s"
    assert len(target.requests) == 1
    assert not helper_threads()
    wait_for(target.hung_up.is_set, timeout=10, message="the client to close its socket")


def test_normal_request_is_unchanged(target: Target) -> None:
    events, state = run_node_in_thread(f"{target.url}/echo", lambda: False,
                                       method="POST", body={"a": 1})
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    out = state.entries["h"]["output"]
    assert out["status"] == 200
    assert out["body"] == {"method": "POST", "path": "/echo", "body": '{"a": 1}'}
    assert out["headers"]["content-type"] == "application/json"
    assert target.requests == [("POST", "/echo", '{"a": 1}')]
    assert not helper_threads()


def test_run_interruptible_cancels_and_joins_when_should_stop_raises() -> None:
    """Whatever ends the wait, the helper is woken (socket shut down) and joined."""
    left, right = socket.socketpair()
    canceller = SocketCanceller()
    canceller.watch(left)
    helper_result: list[bytes] = []

    def work() -> bytes:
        left.settimeout(SILENCE)
        helper_result.append(left.recv(10))  # b"" once shut down
        return helper_result[-1]

    calls = [0]

    def should_stop() -> bool:
        calls[0] += 1
        if calls[0] > 2:
            raise RuntimeError("stop flag unavailable")
        return False

    try:
        with pytest.raises(RuntimeError, match="stop flag unavailable"):
            run_interruptible(work, canceller, should_stop=should_stop,
                              deadline=time.monotonic() + SILENCE,
                              on_deadline=lambda: TimeoutError(), poll=0.05, name="test-io")
        assert helper_result == [b""]  # the helper was woken and finished before we returned
        assert canceller.cancelled
        with pytest.raises(OSError):
            canceller.watch(right)  # closed: nothing new can be registered
    finally:
        left.close()
        right.close()


def test_run_interruptible_returns_result_and_raises_stop() -> None:
    canceller = SocketCanceller()
    assert run_interruptible(lambda: 42, canceller, should_stop=lambda: False,
                             deadline=time.monotonic() + SILENCE,
                             on_deadline=lambda: TimeoutError()) == 42
    left, right = socket.socketpair()
    try:
        canceller = SocketCanceller()
        canceller.watch(left)

        def block() -> bytes:
            left.settimeout(SILENCE)
            return left.recv(10)

        with pytest.raises(StopRequested):
            run_interruptible(block, canceller, should_stop=lambda: True,
                              deadline=time.monotonic() + SILENCE,
                              on_deadline=lambda: TimeoutError(), poll=0.01)
    finally:
        left.close()
        right.close()
