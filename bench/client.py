"""Load clients: loopback only, every loop bounded by count AND time.

* :func:`check_loopback` refuses any URL whose host is not on the loopback range.
* :class:`Api` is a thin keep-alive ``requests.Session`` wrapper (one per thread).
* :func:`sequential` / :func:`closed_loop` time requests; :class:`WsClient` reads a WebSocket.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

HARD_MAX_REQUESTS = 500_000  # per phase, whatever the arguments say
HARD_MAX_SECONDS = 900.0     # per phase


class NotLoopback(ValueError):
    pass


def check_loopback(url: str) -> str:
    """Return ``url`` if its host is a loopback address (127.0.0.0/8, ::1, localhost)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return url
    try:
        if ipaddress.ip_address(host).is_loopback:
            return url
    except ValueError:
        pass
    raise NotLoopback(f"refusing non-loopback target {host!r} ({url})")


class JsonPoster:
    """The timed hot path: POST a JSON body on one keep-alive HTTP/1.1 connection (``http.client``).

    About a third of ``requests``' CPU per call. On this 2-core machine the client shares the
    cores with the server under test, so every millisecond the client spends is taken from the
    server; Athena and n8n are timed through the same poster. A connection the server closed
    between two calls (keep-alive timeout) is reopened once."""

    def __init__(self, base: str, headers: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(check_loopback(base))
        self.host, self.port, self.prefix = parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/")
        self.headers = {"Content-Type": "application/json", "Connection": "keep-alive", **(headers or {})}
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of ``POST path``; raises ``OSError``/``http.client.HTTPException``."""
        for attempt in (1, 2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", self.prefix + path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if not reused or attempt == 2:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Api:
    """One keep-alive session against an Athena API (use one per thread)."""

    def __init__(self, base: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.base = check_loopback(base.rstrip("/"))
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies, no .netrc: straight to 127.0.0.1
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.poster = JsonPoster(self.base, {"Authorization": f"Bearer {token}"} if token else None, timeout)

    def url(self, path: str) -> str:
        return check_loopback(path if path.startswith("http") else self.base + path)

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return self.session.request(method, self.url(path), **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def json(self, method: str, path: str, expect: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        response = self.request(method, path, **kw)
        if response.status_code not in expect:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response.json()

    def close(self) -> None:
        self.session.close()
        self.poster.close()


@dataclass
class Sample:
    seconds: float
    ok: bool
    error: str | None = None
    body: Any = None
    started: float = 0.0  # perf_counter at send


def timed(fn: Callable[[], requests.Response], ok_status: tuple[int, ...] = (200,),
          keep_body: bool = False) -> Sample:
    t0 = time.perf_counter()
    try:
        response = fn()
        body = response.content
        dt = time.perf_counter() - t0
        if response.status_code in ok_status:
            return Sample(dt, True, None, json.loads(body) if keep_body else None, t0)
        return Sample(dt, False, f"HTTP {response.status_code}", None, t0)
    except requests.RequestException as exc:
        return Sample(time.perf_counter() - t0, False, type(exc).__name__, None, t0)


def sequential(fn: Callable[[], Sample], count: int, max_seconds: float) -> list[Sample]:
    """Call ``fn`` one at a time, at most ``count`` times and at most ``max_seconds``."""
    deadline = time.perf_counter() + min(max_seconds, HARD_MAX_SECONDS)
    samples: list[Sample] = []
    for _ in range(min(count, HARD_MAX_REQUESTS)):
        if time.perf_counter() >= deadline:
            break
        samples.append(fn())
    return samples


@dataclass
class LoopResult:
    samples: list[Sample] = field(default_factory=list)  # (ok and failed) with .started
    wall: float = 0.0
    t0: float = 0.0


def closed_loop(make_fn: Callable[[], tuple[Callable[[], Sample], Callable[[], None]]], clients: int,
                seconds: float, max_requests: int = 200_000) -> LoopResult:
    """``clients`` threads, each sending its next request as soon as the previous one answered,
    for ``seconds`` (and at most ``max_requests`` in all). ``make_fn`` is called once per thread
    and returns (request function, cleanup)."""
    seconds = min(seconds, HARD_MAX_SECONDS)
    per_client = max(1, min(max_requests, HARD_MAX_REQUESTS) // clients)
    barrier = threading.Barrier(clients + 1)
    lock = threading.Lock()
    result = LoopResult()
    state = {"deadline": 0.0}

    def worker() -> None:
        fn, cleanup = make_fn()
        local: list[Sample] = []
        try:
            barrier.wait()
            for _ in range(per_client):
                if time.perf_counter() >= state["deadline"]:
                    break
                local.append(fn())
        finally:
            cleanup()
            with lock:
                result.samples.extend(local)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    result.t0 = time.perf_counter()
    state["deadline"] = result.t0 + seconds
    barrier.wait()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    result.wall = time.perf_counter() - result.t0
    return result


class WsClient:
    """A WebSocket (websocket-client) to a loopback URL; ``recv`` returns (receive time, message)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        import websocket  # websocket-client (in requirements.txt)

        check_loopback(url.replace("ws://", "http://", 1))
        self.ws = websocket.create_connection(url, timeout=timeout, enable_multithread=True)

    def recv(self, timeout: float | None = None) -> tuple[float, dict[str, Any]] | None:
        import websocket

        if timeout is not None:
            self.ws.settimeout(timeout)
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        received = time.time()
        if not raw:
            return None
        return received, json.loads(raw)

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass
