"""Screenshots of the API docs page (Swagger UI, /api/v1/docs) with the "Create a workflow" and
"Trigger a webhook" forms filled with the document's shipped examples (athena/api/examples.py).

``make screenshots`` runs it. It serves the app on a free loopback port (threaded werkzeug, a
temporary SQLite database, no Redis: the docs page needs neither), starts Debian's chromium in
headless mode with a DevTools port (no browser download), and drives it over the Chrome DevTools
Protocol with websocket-client: open the page, expand each operation, click "Try it out" (Swagger
UI then fills the request body with the example), and capture the operation's block.

    .venv/bin/python tools/screenshot_docs.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Writes docs/screenshots/create-workflow.png and docs/screenshots/trigger-webhook.png."""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websocket  # noqa: E402  (websocket-client, in requirements.txt)
from werkzeug.serving import make_server  # noqa: E402

# (file name, method, path): the operations shown, as Swagger UI lists them.
SHOTS = (
    ("create-workflow.png", "post", "/api/v1/workflows"),
    ("trigger-webhook.png", "post", "/api/v1/workflows/{uuid}/webhook"),
)
WIDTH = 1100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshot_docs: timed out waiting for {what}")
        time.sleep(0.1)


def serve_app(database: Path) -> tuple[Any, str]:
    """The app on a free loopback port (in a thread); returns (server, base URL)."""
    import config
    from athena import create_app

    class DocsConfig(config.Config):
        SQLALCHEMY_DATABASE_URI = f"sqlite:///{database}"
        REDIS_URL = None

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per asset
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(DocsConfig), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


class Chromium:
    """A headless chromium process and one page, driven over the DevTools Protocol."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.port = free_port()
        args = [binary, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--hide-scrollbars", "--mute-audio", f"--remote-debugging-port={self.port}",
                "--remote-allow-origins=*", f"--user-data-dir={profile}", f"--window-size={WIDTH},1000",
                "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        page = wait_until(self._page_target, "chromium's DevTools endpoint")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.ids = itertools.count(1)

    def _page_target(self) -> dict | None:
        if self.process.poll() is not None:
            raise SystemExit(f"screenshot_docs: chromium exited with {self.process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as response:
                targets = json.load(response)
        except OSError:
            return None
        return next((t for t in targets if t.get("type") == "page"), None)

    def send(self, method: str, **params: Any) -> dict:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise SystemExit(f"screenshot_docs: {method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise SystemExit(f"screenshot_docs: {expression[:80]}...: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _block(method: str, path: str) -> str:
    """A JS expression: the Swagger UI block (.opblock) of one operation."""
    return (f"[...document.querySelectorAll('.opblock.opblock-{method}')].find(b => "
            f"b.querySelector('.opblock-summary-path')?.getAttribute('data-path') === {json.dumps(path)})")


def fill_form(browser: Chromium, method: str, path: str) -> None:
    """Expand the operation and press "Try it out": Swagger UI fills the body with the example."""
    block = _block(method, path)
    wait_until(lambda: browser.js(f"!!({block})"), f"the {method.upper()} {path} block")
    browser.js(f"(b => (b.querySelector('.opblock-summary-control') || b.querySelector('.opblock-summary')).click())"
               f"({block})")
    wait_until(lambda: browser.js(f"!!({block}).querySelector('.try-out__btn')"), "the Try it out button")
    browser.js(f"({block}).querySelector('.try-out__btn').click()")
    wait_until(lambda: browser.js(f"(({block}).querySelector('textarea.body-param__text')?.value || '').length > 2"),
               "the example in the request body")
    # The whole example visible: the textarea as tall as its text (Swagger UI's is a few lines).
    browser.js(f"(() => {{ const t = ({block}).querySelector('textarea.body-param__text');"
               f"t.style.minHeight = '0'; t.style.maxHeight = 'none'; t.style.height = 'auto';"
               f"t.style.height = (t.scrollHeight + 4) + 'px'; }})()")


def capture(browser: Chromium, method: str, path: str, target: Path) -> None:
    """The operation's block, from its header to its Execute button (the responses left out)."""
    block = _block(method, path)
    rect = browser.js(f"""(() => {{
        const b = {block};
        const top = b.getBoundingClientRect().top + window.scrollY;
        const end = b.querySelector('.execute-wrapper') || b.querySelector('.opblock-body') || b;
        const r = b.getBoundingClientRect();
        return {{x: r.left + window.scrollX, y: top, width: r.width,
                 height: end.getBoundingClientRect().bottom + window.scrollY - top}};
    }})()""")
    margin = 8
    clip = {"x": max(rect["x"] - margin, 0), "y": max(rect["y"] - margin, 0), "width": rect["width"] + 2 * margin,
            "height": rect["height"] + 2 * margin, "scale": 1}
    shot = browser.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
    target.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot_docs: wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} "
          f"({target.stat().st_size // 1024} KB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                        help="Debian's chromium package (apt-get install chromium)")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print("screenshot_docs: chromium not found; install Debian's package: apt-get install chromium",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="athena-docs-shots-") as tmp:
        server, base = serve_app(Path(tmp) / "docs.db")
        browser = Chromium(args.chromium, Path(tmp) / "profile")
        try:
            browser.send("Page.enable")
            browser.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=1000, deviceScaleFactor=1,
                         mobile=False)
            browser.send("Page.navigate", url=f"{base}/api/v1/docs")
            wait_until(lambda: browser.js("document.querySelectorAll('.opblock').length > 0"),
                       "Swagger UI to render the document")
            for name, method, path in SHOTS:
                fill_form(browser, method, path)
            browser.js("document.fonts.ready.then(() => true)")
            for name, method, path in SHOTS:
                capture(browser, method, path, args.out / name)
        finally:
            browser.close()
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
