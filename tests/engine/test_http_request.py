"""http_request node, end to end through the engine, against a real server on 127.0.0.1.

Every outgoing ``socket.connect`` / ``socket.getaddrinfo`` of this process is recorded with
a Python audit hook (no mocks); the autouse fixture asserts that nothing but 127.0.0.1 was
ever contacted.  ``local_server`` and ``net_audit`` are reused by test_ssrf_guard.py.
"""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from athena.engine import RunStopped

from ._engine_helpers import assert_finished, edge, execute, node


class NetAudit:
    """Records connect()/getaddrinfo() calls made by this process (audit hooks are global)."""

    def __init__(self) -> None:
        self.connects: list[tuple[Any, ...]] = []
        self.lookups: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            address = args[1]
            self.connects.append(tuple(address) if isinstance(address, tuple) else (address,))
        elif event == "socket.getaddrinfo":
            self.lookups.append(str(args[0]))

    def reset(self) -> None:
        self.connects.clear()
        self.lookups.clear()

    def hosts(self) -> set[str]:
        return {str(address[0]) for address in self.connects}


AUDIT = NetAudit()
RELEASE = threading.Event()  # set at teardown: wakes handlers that wait (slow / drip)
STATE: dict[str, bool] = {"dripping": False}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              extra: dict[str, str] | None = None, length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode())

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size).decode() if size else ""
        if path == "/json":
            self._json(200, {"hello": "world", "n": 1})
        elif path == "/echo":
            self._json(200, {"method": self.command, "path": path, "query": query, "body": body,
                             "headers": {k.lower(): v for k, v in self.headers.items()}})
        elif path == "/text":
            self._send(200, "plain text ✓".encode(), "text/plain; charset=utf-8")
        elif path.startswith("/status/"):
            self._json(int(path.rsplit("/", 1)[1]), {"error": "nope"})
        elif path == "/slow":
            RELEASE.wait(5)
            self._json(200, {"slow": True})
        elif path.startswith("/big/"):
            self._send(200, b"x" * int(path.rsplit("/", 1)[1]), "text/plain")
        elif path.startswith("/bigstream/"):  # no Content-Length: read until close
            self._send(200, b"y" * int(path.rsplit("/", 1)[1]), "text/plain", length=False)
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            STATE["dripping"] = True
            self.wfile.write(b"first chunk")
            self.wfile.flush()
            RELEASE.wait(5)
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            if left:
                self._send(302, b"", extra={"Location": f"/redirect/{left - 1}"})
            else:
                self._json(200, {"arrived": True})
        elif path == "/to":
            code = int(query.get("code", ["302"])[0])
            self._send(code, b"", extra={"Location": query["url"][0]})
        else:
            self._json(404, {"error": "no route"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _route


@pytest.fixture(scope="session")
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        RELEASE.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def net_audit() -> Iterator[NetAudit]:
    AUDIT.reset()
    yield AUDIT
    assert AUDIT.hosts() <= {"127.0.0.1"}, f"contacted non-local addresses: {AUDIT.connects}"


SETTINGS = {"http_allowlist": ["127.0.0.1"], "http_max_response_bytes": 100_000,
            "http_default_timeout": 10}


def run_http(settings: dict[str, Any] | None = None, node_settings: dict[str, Any] | None = None,
             **parameters: Any) -> tuple[dict[str, Any], Any]:
    """Run manual -> http_request; return (entry of the http node, final event)."""
    events, state = execute([node("t", "manual"), node("h", "http_request", node_settings,
                                                       **parameters)],
                            [edge("t", "h")], services={"settings": SETTINGS if settings is None else settings},
                            variables={"token": "abc"})
    return state.entries["h"], events[-1]


def ok(entry: dict[str, Any]) -> dict[str, Any]:
    assert entry["status"] == "success", entry["error"]
    return entry["output"]


def failed(entry: dict[str, Any], final: Any) -> str:
    assert entry["status"] == "error"
    assert final.status == "failed"
    return str(entry["error"])


def test_get_json(local_server: str) -> None:
    entry, final = run_http(url=f"{local_server}/json")
    assert final.status == "completed"
    out = ok(entry)
    assert out["status"] == 200
    assert out["body"] == {"hello": "world", "n": 1}
    assert out["headers"]["content-type"] == "application/json"


def test_post_json_body_is_echoed_and_method_is_case_insensitive(local_server: str) -> None:
    out = ok(run_http(method="post", url=f"{local_server}/echo",
                      body={"a": 1, "t": "{{ variables.token }}"})[0])
    echoed = out["body"]
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"a": 1, "t": "abc"}
    assert echoed["headers"]["content-type"] == "application/json"


def test_form_body(local_server: str) -> None:
    out = ok(run_http(method="PUT", url=f"{local_server}/echo", body_type="form",
                      body={"a": 1, "b": "two words", "c": ["x", "y"]})[0])
    echoed = out["body"]
    assert echoed["method"] == "PUT"
    assert echoed["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(echoed["body"]) == {"a": ["1"], "b": ["two words"], "c": ["x", "y"]}


def test_raw_body_keeps_user_content_type(local_server: str) -> None:
    out = ok(run_http(method="PATCH", url=f"{local_server}/echo", body_type="raw",
                      body="<x/>", headers={"Content-Type": "application/xml"})[0])
    assert out["body"]["body"] == "<x/>"
    assert out["body"]["headers"]["content-type"] == "application/xml"


def test_query_params_merge_with_url_query(local_server: str) -> None:
    out = ok(run_http(url=f"{local_server}/echo?x=1",
                      query={"y": 2, "z": ["a", "b"], "skip": None, "flag": True})[0])
    assert out["body"]["query"] == {"x": ["1"], "y": ["2"], "z": ["a", "b"], "flag": ["true"]}


def test_request_headers_are_sent(local_server: str) -> None:
    out = ok(run_http(url=f"{local_server}/echo",
                      headers={"X-Token": "{{ variables.token }}", "X-Drop": None})[0])
    sent = out["body"]["headers"]
    assert sent["x-token"] == "abc"
    assert "x-drop" not in sent
    assert sent["user-agent"].startswith("Athena")
    assert sent["host"] == local_server.removeprefix("http://")


def test_text_response_and_explicit_formats(local_server: str) -> None:
    assert ok(run_http(url=f"{local_server}/text")[0])["body"] == "plain text ✓"
    as_text = ok(run_http(url=f"{local_server}/json", response_format="text")[0])
    assert json.loads(as_text["body"]) == {"hello": "world", "n": 1}
    entry, final = run_http(url=f"{local_server}/text", response_format="json")
    assert "not valid JSON" in failed(entry, final)


def test_head_and_options(local_server: str) -> None:
    head = ok(run_http(method="HEAD", url=f"{local_server}/json")[0])
    assert head["status"] == 200 and head["body"] is None
    assert ok(run_http(method="OPTIONS", url=f"{local_server}/echo")[0])["body"]["method"] == "OPTIONS"


def test_404_is_a_result_by_default(local_server: str) -> None:
    out = ok(run_http(url=f"{local_server}/status/404")[0])
    assert out["status"] == 404
    assert out["body"] == {"error": "nope"}


def test_404_fails_with_fail_on_status(local_server: str) -> None:
    entry, final = run_http(url=f"{local_server}/status/404", fail_on_status=True)
    message = failed(entry, final)
    assert "HTTP 404" in message and "nope" in message


def test_timeout_is_a_node_error(local_server: str) -> None:
    entry, final = run_http(url=f"{local_server}/slow", timeout=0.5)
    assert "timed out" in failed(entry, final)


def test_node_settings_timeout_applies(local_server: str) -> None:
    entry, final = run_http(node_settings={"timeout": 0.5}, url=f"{local_server}/slow")
    assert "timed out" in failed(entry, final)


@pytest.mark.parametrize("path", ["/big/5000", "/bigstream/5000"])
def test_response_cap(local_server: str, path: str) -> None:
    settings = {**SETTINGS, "http_max_response_bytes": 1000}
    entry, final = run_http(settings, url=f"{local_server}{path}")
    assert "response larger than 1000 bytes" in failed(entry, final)
    assert ok(run_http(settings, url=f"{local_server}/big/1000")[0])["body"] == "x" * 1000


def test_stop_is_honoured_while_streaming(local_server: str) -> None:
    STATE["dripping"] = False
    events, state = execute([node("t", "manual"), node("h", "http_request",
                                                       url=f"{local_server}/drip")],
                            [edge("t", "h")], services={"settings": SETTINGS},
                            should_stop=lambda: STATE["dripping"])
    assert isinstance(events[-1], RunStopped)


def test_redirect_chain_is_followed(local_server: str) -> None:
    out = ok(run_http(url=f"{local_server}/redirect/3")[0])
    assert out == {"status": 200, "headers": out["headers"], "body": {"arrived": True}}


def test_too_many_redirects(local_server: str) -> None:
    entry, final = run_http(url=f"{local_server}/redirect/4", max_redirects=3)
    assert "too many redirects" in failed(entry, final)


def test_redirect_not_followed_when_disabled(local_server: str) -> None:
    out = ok(run_http(url=f"{local_server}/redirect/2", follow_redirects=False)[0])
    assert out["status"] == 302
    assert out["headers"]["location"] == "/redirect/1"


@pytest.mark.parametrize(("code", "method", "body"), [
    (303, "GET", ""), (302, "GET", ""), (307, "POST", '{"k": 1}'), (308, "POST", '{"k": 1}'),
])
def test_redirect_method_rules(local_server: str, code: int, method: str, body: str) -> None:
    out = ok(run_http(method="POST", url=f"{local_server}/to?code={code}&url=/echo",
                      body={"k": 1})[0])
    assert (out["body"]["method"], out["body"]["body"]) == (method, body)


def test_cross_origin_redirect_drops_credentials(local_server: str) -> None:
    port = local_server.rsplit(":", 1)[1]
    settings = {**SETTINGS, "http_allowlist": ["127.0.0.1", "localhost"]}
    target = quote(f"http://localhost:{port}/echo", safe="")
    out = ok(run_http(settings, url=f"{local_server}/to?url={target}",
                      headers={"Authorization": "Bearer s3cret", "X-Keep": "1"})[0])
    sent = out["body"]["headers"]
    assert "authorization" not in sent and sent["x-keep"] == "1"
    assert sent["host"] == f"localhost:{port}"


@pytest.mark.parametrize("blocked", ["http://169.254.169.254/latest/meta-data", "http://10.0.0.1/",
                                     "http://[::1]/", "file:///etc/passwd"])
def test_redirect_to_blocked_address_is_refused(local_server: str, blocked: str,
                                                net_audit: NetAudit) -> None:
    entry, final = run_http(url=f"{local_server}/to?url={quote(blocked, safe='')}")
    assert "refusing" in failed(entry, final)
    port = int(local_server.rsplit(":", 1)[1])
    assert net_audit.connects == [("127.0.0.1", port)]  # only the first, allowed hop


def test_allowlisted_name_does_not_allow_other_spellings(local_server: str) -> None:
    port = local_server.rsplit(":", 1)[1]
    settings = {**SETTINGS, "http_allowlist": ["localhost"]}
    assert ok(run_http(settings, url=f"http://localhost:{port}/json")[0])["status"] == 200
    entry, final = run_http(settings, url=f"http://localhost:{port}/to?url="
                                          + quote(f"http://127.0.0.1:{port}/json", safe=""))
    assert "refusing to connect to 127.0.0.1: loopback" in failed(entry, final)


def test_default_settings_block_loopback(local_server: str, net_audit: NetAudit) -> None:
    entry, final = run_http({}, url=f"{local_server}/json")
    assert "loopback" in failed(entry, final)
    assert net_audit.connects == []


def test_connection_refused_is_a_clean_node_error(local_server: str) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    entry, final = run_http(url=f"http://127.0.0.1:{port}/")
    assert failed(entry, final).startswith(f"could not connect to 127.0.0.1:{port}")


def test_invalid_parameters() -> None:
    entry, final = run_http(method="{{ 'FETCH' }}", url="http://127.0.0.1/")
    assert "method" in failed(entry, final)
    entry, final = run_http(url="http://127.0.0.1/", body_type="form", body=[1, 2])
    assert "form body" in failed(entry, final)


def test_on_error_continue_routes_to_error_handle(local_server: str) -> None:
    nodes = [node("t", "manual"),
             node("h", "http_request", {"on_error": "continue"},
                  url="http://169.254.169.254/latest/meta-data"),
             node("good", "set", fields={"path": "main"}),
             node("bad", "set", fields={"path": "error", "why": "{{ nodes.h.output.error }}"})]
    events, state = execute(nodes, [edge("t", "h"), edge("h", "good"),
                                    edge("h", "bad", handle="error")],
                            services={"settings": SETTINGS})
    assert_finished(events)
    assert state.entries["h"]["status"] == "error"
    assert state.entries["good"]["status"] == "skipped"
    assert state.entries["bad"]["output"]["path"] == "error"
    assert "cloud metadata" in state.entries["bad"]["output"]["why"]
