"""Local HTTP targets that count side effects and can hold a request until released."""
from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler

from tests.support.servers import http_url, send_json, serve_http


class CountingTarget:
    """``GET /hit/<name>`` counts and answers at once; ``GET /hold/<name>`` counts and, the first
    time only, waits until :meth:`release` (so a test can act while a node is in progress)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.holding = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                kind, _, name = self.path.strip("/").partition("/")
                with target.lock:
                    target.counts[name] += 1
                    first = target.counts[name] == 1
                if kind == "hold" and first:
                    target.holding.set()
                    target.released.wait(120)
                try:
                    send_json(self)
                except OSError:
                    pass  # the worker that asked is gone

            def log_message(self, *args) -> None:
                pass

        self.server = serve_http(Handler)

    @property
    def url(self) -> str:
        return http_url(self.server)

    def reset(self) -> None:
        self.counts.clear()
        self.released.clear()
        self.holding.clear()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()


def http_chain(target_url: str, count: int, hold_at: int | None) -> tuple[list[dict], list[dict]]:
    """manual -> n1..n<count> http_request nodes; node ``hold_at`` holds its first request."""
    nodes = [{"id": "start", "type": "manual"}]
    for i in range(1, count + 1):
        kind = "hold" if i == hold_at else "hit"
        nodes.append({"id": f"n{i}", "type": "http_request",
                      "parameters": {"url": f"{target_url}/{kind}/n{i}", "timeout": 120}})
    edges = [{"source": nodes[i - 1]["id"], "target": nodes[i]["id"]} for i in range(1, len(nodes))]
    return nodes, edges


class RecordingTarget:
    """``GET /hit/<key>`` answers at once; ``GET /hold/<key>`` holds its first request until
    :meth:`release` of that key (or of all). Every request's arrival is recorded per key, on
    this process' monotonic clock, so a test can tell which requests came before and after a
    crash it caused."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.held: set[str] = set()  # keys whose first request is being held now
        self.lock = threading.Lock()
        self.releases: dict[str, threading.Event] = {}
        self.release_all = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                kind, _, key = self.path.strip("/").partition("/")
                with target.lock:
                    arrivals = target.arrivals.setdefault(key, [])
                    arrivals.append(time.monotonic())
                    hold = kind == "hold" and len(arrivals) == 1
                    if hold:
                        target.held.add(key)
                    release = target.releases.setdefault(key, threading.Event())
                if hold:
                    while not (release.wait(0.05) or target.release_all.is_set()):
                        pass
                    with target.lock:
                        target.held.discard(key)
                try:
                    send_json(self)
                except OSError:
                    pass  # the worker that asked is gone

            def log_message(self, *args) -> None:
                pass

        self.server = serve_http(Handler)

    @property
    def url(self) -> str:
        return http_url(self.server)

    def count(self, key: str) -> int:
        with self.lock:
            return len(self.arrivals.get(key, []))

    def holding(self) -> set[str]:
        with self.lock:
            return set(self.held)

    def release(self, key: str) -> None:
        with self.lock:
            self.releases.setdefault(key, threading.Event()).set()

    def close(self) -> None:
        self.release_all.set()
        self.server.shutdown()


def webhook_http_graph(target_url: str) -> tuple[list[dict], list[dict]]:
    """webhook -> set -> http_request (GET ``<target>/<kind>/<key>``, kind and key from the
    webhook's body: one path per execution) -> set."""
    nodes = [
        {"id": "hook", "type": "webhook", "parameters": {}},
        {"id": "before", "type": "set", "parameters": {"fields": {"key": "{{ trigger.body.key }}"}}},
        {"id": "call", "type": "http_request", "parameters": {
            "url": target_url + "/{{ trigger.body.kind }}/{{ trigger.body.key }}", "timeout": 120}},
        {"id": "after", "type": "set", "parameters": {"fields": {"done": True}}},
    ]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in zip(nodes, nodes[1:])]
    return nodes, edges
