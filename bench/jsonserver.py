"""An instant JSON service on 127.0.0.1: the target of scenario 8's ``http_request`` nodes (and of
n8n's HTTP Request node in the same run).

Every ``GET``/``POST`` answers at once with a small JSON object (``{"ok": true, "n": <count>,
"path": ...}``) on a keep-alive HTTP/1.1 connection (threaded: one thread per connection). A
POST body is read and dropped. It counts the requests it answered (``served``), so a scenario
can check that every execution really made its call."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:  # quiet
        pass

    def _answer(self) -> None:
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.served += 1  # type: ignore[attr-defined]
            n = server.served  # type: ignore[attr-defined]
        body = json.dumps({"ok": True, "n": n, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 20))
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            pass


class JsonServer:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()  # type: ignore[attr-defined]
        self.httpd.served = 0  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def served(self) -> int:
        return int(self.httpd.served)  # type: ignore[attr-defined]

    def __enter__(self) -> "JsonServer":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
