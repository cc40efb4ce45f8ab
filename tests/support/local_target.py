"""A local HTTP target for the example tests: a real HTTP server on 127.0.0.1 that answers
``(method, path)`` routes with JSON and records every request it receives (:class:`Hit`),
and the ``target`` fixture that starts one per test."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.servers import http_url, send_json, serve_http


@dataclass
class Hit:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: Any


Answer = tuple[int, Any]


class LocalTarget:
    """Answers ``(method, path)`` routes with JSON and records every request.

    A route's reply is ``(status, body)``, a list of them (served in turn, the last one
    repeats) or a function of the :class:`Hit`. Unknown routes answer 404."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.routes: dict[tuple[str, str], Callable[[Hit], Answer]] = {}
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                hit = Hit(self.command, parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()},
                          {k.lower(): v for k, v in self.headers.items()}, body)
                with target.lock:
                    target.hits.append(hit)
                    route = target.routes.get((hit.method, hit.path))
                status, payload = route(hit) if route else (404, {"error": f"no route {hit.method} {hit.path}"})
                send_json(self, status, json.dumps(payload).encode())

            do_GET = do_POST = do_PUT = _serve  # noqa: N815 - http.server API

            def log_message(self, *args: Any) -> None:
                pass

        self.server = serve_http(Handler)

    @property
    def url(self) -> str:
        return http_url(self.server)

    def on(self, method: str, path: str, reply: Answer | list[Answer] | Callable[[Hit], Answer]) -> None:
        if callable(reply):
            self.routes[(method, path)] = reply
            return
        queue = list(reply) if isinstance(reply, list) else [reply]

        def serve(_: Hit) -> Answer:  # called under self.lock
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.routes[(method, path)] = serve

    def requests(self, method: str, path: str | None = None) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.method == method and (path is None or h.path == path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target():
    server = LocalTarget()
    yield server
    server.close()
