"""A real gunicorn (the repo's gunicorn.conf.py, so athena.gunicorn_worker.JsonErrorWorker) answers
the errors it raises itself, before Flask sees the request, as JSON like the API's own errors."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.support.servers import ROOT, free_port, wait_for

# Small limits, so the oversized requests stay small (gunicorn reads them whole before closing).
LINE_LIMIT, FIELD_SIZE_LIMIT, FIELDS_LIMIT = 1024, 1024, 20


class Gunicorn:
    def __init__(self, process: subprocess.Popen, port: int, log_path):
        self.process, self.port, self.log_path = process, port, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def accepting(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited ({self.process.returncode}):\n{self.log()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@pytest.fixture(scope="module")
def gunicorn(app, test_settings):
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free loopback port, against the test database
    (migrated by the ``app`` fixture) and Redis. Only bind, process/thread counts and limits are
    overridden; the worker class is the config file's."""
    port = free_port()
    log_path = test_settings["tmp"] / "gunicorn.log"
    env = {**os.environ, "DATABASE_URL": test_settings["database_url"], "REDIS_URL": test_settings["redis_url"],
           "ATHENA_QUEUE": test_settings["queue"], "ATHENA_ENV": "development", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
               "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "4", "--no-control-socket",
               "--limit-request-line", str(LINE_LIMIT), "--limit-request-field_size", str(FIELD_SIZE_LIMIT),
               "--limit-request-fields", str(FIELDS_LIMIT), "wsgi:app"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Gunicorn(process, port, log_path)
    try:
        wait_for(server.accepting, timeout=60, message="gunicorn to accept connections")
        yield server
    finally:
        server.stop()


def exchange(port: int, raw: bytes) -> tuple[int, str, dict[str, str], bytes]:
    """Send ``raw`` over a new connection and read the answer until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    _version, status, reason = status_line.split(" ", 2)
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status), reason, headers, body


def assert_json_error(answer, status: int, reason: str | None = None) -> dict:
    got_status, got_reason, headers, body = answer
    assert got_status == status, body[:300]
    assert reason is None or got_reason == reason
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    document = json.loads(body)
    assert isinstance(document["message"], str) and document["message"]
    return document


def test_the_config_file_selects_the_json_error_worker(gunicorn):
    assert "Using worker: athena.gunicorn_worker.JsonErrorWorker" in gunicorn.log()


def test_request_line_too_long_is_json_414(gunicorn):
    path = "/api/v1/user?q=" + "a" * LINE_LIMIT
    answer = exchange(gunicorn.port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    document = assert_json_error(answer, 414, "URI Too Long")
    assert "Request Line is too large" in document["message"]
    assert answer[2]["connection"] == "close"


def test_header_field_too_large_is_json_431(gunicorn):
    raw = f"GET /api/v1/user HTTP/1.1\r\nHost: localhost\r\nX-Big: {'b' * FIELD_SIZE_LIMIT}\r\n\r\n"
    answer = exchange(gunicorn.port, raw.encode())
    assert_json_error(answer, 431, "Request Header Fields Too Large")
    assert answer[2]["connection"] == "close"


def test_too_many_header_fields_is_json_431(gunicorn):
    fields = "".join(f"X-Field-{n}: {n}\r\n" for n in range(FIELDS_LIMIT + 5))
    answer = exchange(gunicorn.port, f"GET /api/v1/user HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n".encode())
    assert_json_error(answer, 431, "Request Header Fields Too Large")


def test_malformed_request_line_is_json_400(gunicorn):
    answer = exchange(gunicorn.port, b"THIS IS NOT HTTP\r\n\r\n")
    assert_json_error(answer, 400, "Bad Request")
    assert answer[2]["connection"] == "close"


def test_the_app_is_served_by_the_worker(gunicorn):
    answer = exchange(gunicorn.port, b"GET /api/v1/user HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert_json_error(answer, 401)  # Flask's answer, through the worker
