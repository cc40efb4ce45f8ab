"""A local HTTP target that counts side effects, and can hold one request until released."""
from __future__ import annotations

import threading
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
