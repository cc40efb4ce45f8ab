"""A slow HTTP server on 127.0.0.1 for the stop scenario (bounded: every response ends by itself).

``/drip?seconds=S``          headers at once, then one chunk every 50 ms for S seconds
``/slow-headers?seconds=S``  nothing for S seconds, then a short response"""
from __future__ import annotations

import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_SECONDS = 120.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        parsed = urllib.parse.urlsplit(self.path)
        seconds = min(float(urllib.parse.parse_qs(parsed.query).get("seconds", ["10"])[0]), MAX_SECONDS)
        try:
            if parsed.path == "/drip":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                end = time.monotonic() + seconds
                while time.monotonic() < end and not self.server.stopping.is_set():  # type: ignore[attr-defined]
                    self.wfile.write(b"1\r\nx\r\n")
                    self.wfile.flush()
                    time.sleep(0.05)
                self.wfile.write(b"0\r\n\r\n")
            elif parsed.path == "/slow-headers":
                self.server.stopping.wait(seconds)  # type: ignore[attr-defined]
                body = b"late"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node was stopped and hung up


class SlowServer:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.stopping = threading.Event()  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "SlowServer":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.httpd.stopping.set()  # type: ignore[attr-defined]
        self.httpd.shutdown()
        self.httpd.server_close()
