"""The gunicorn worker class of the API: gthread, with JSON protocol errors.

Some requests never reach Flask: gunicorn's HTTP parser rejects them first (request line over
``limit_request_line`` → 414, a header over ``limit_request_field_size`` or more than
``limit_request_fields`` headers → 431, a malformed request → 400; an exception before the
response started → 500). ``Worker.handle_error`` (gunicorn/workers/base.py) picks the status,
reason and message, logs, and then calls ``gunicorn.util.write_error``, which writes an HTML
page. The API answers every error as JSON (``{"message": str, "errors": {...}}``), so this
worker keeps gunicorn's choice of status, reason, message and logging and replaces only that
last write. ``handle_error`` has no smaller hook (the writer is a module function, looked up at
call time), so the worker swaps ``gunicorn.util.write_error`` in its own process, before any
request: the master and other worker classes are untouched. ``tests/deploy/`` runs a real
gunicorn and checks each status, so an upgrade that stops calling ``util.write_error`` fails
there.

Gunicorn imports this module in the master: it must not import the Flask app.
"""
from __future__ import annotations

import json
import socket

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error`` with the API's error shape: ``{"message": ...}`` as JSON."""
    body = json.dumps({"message": mesg or reason}).encode()  # ensure_ascii: plain ASCII
    head = (f"HTTP/1.1 {status_int} {reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonErrorWorker(ThreadWorker):
    """gunicorn's gthread worker whose own error answers (400, 414, 431, 500...) are JSON."""

    def init_process(self) -> None:
        # In the worker process, before its threads start; ThreadWorker.init_process runs the loop.
        util.write_error = write_json_error
        super().init_process()
