"""``python -m athena.cli watch``: follow an execution (or a workspace) over the WebSocket API.

    python -m athena.cli watch <execution-uuid> [--url URL] [--token T] [--after-seq N] [--json]
    python -m athena.cli watch --workspace <workspace-uuid> [...]

One line per message: ``<seq> <event> node=<id> status=<status>`` (execution channel) or
``<seq> <event> execution=<uuid> status=<status>`` (workspace channel). When the execution has
finished, its final output follows (``output: <JSON>``, and ``error: <message>`` for a failed
run); an output too large for the event is read from ``GET /api/v1/workflow-executions/<uuid>``.
With ``--json`` the raw messages (which carry the output) are printed instead. Exit status: 0 after
``execution.finished`` / a normal close, 2 when the server refused (bad token, not found),
1 on any other failure, 130 on Ctrl-C. The token comes from --token or ATHENA_TOKEN."""
from __future__ import annotations

import argparse
import json
import struct
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import websocket

import config
from athena.runs import wire

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130
INLINE_OUTPUT_CHARS = 100  # a longer output is printed indented, over several lines
FETCH_TIMEOUT_SECONDS = 30.0


def build_parser() -> argparse.ArgumentParser:
    defaults = config.watch_settings_from_env()
    parser = argparse.ArgumentParser(prog="python -m athena.cli watch",
                                     description="Print the events of an execution or a workspace as they happen; "
                                                 "for an execution, its final output when it finishes.")
    parser.add_argument("execution_uuid", nargs="?", help="execution to follow (ends after execution.finished)")
    parser.add_argument("--workspace", metavar="UUID", help="follow a workspace's execution status changes instead")
    parser.add_argument("--url", default=defaults["url"], help="Athena base URL (default: %(default)s, or ATHENA_URL)")
    parser.add_argument("--token", default=defaults["token"], help="API token (default: ATHENA_TOKEN)")
    parser.add_argument("--after-seq", type=int, default=None, metavar="N", help="replay only events after seq N")
    parser.add_argument("--json", action="store_true", help="print each message as raw JSON")
    return parser


def channel_url(base: str, execution_uuid: str | None, workspace_uuid: str | None, after_seq: int | None) -> str:
    parts = urlsplit(base if "://" in base else f"http://{base}")
    scheme = {"https": "wss", "wss": "wss"}.get(parts.scheme, "ws")
    prefix = parts.path.rstrip("/")
    if workspace_uuid:
        path = f"{prefix}/api/v1/ws/workspaces/{workspace_uuid}/executions"
    else:
        path = f"{prefix}/api/v1/ws/workflow-executions/{execution_uuid}"
    query = urlencode({"after_seq": after_seq}) if after_seq is not None else ""
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def format_line(message: dict[str, Any]) -> str:
    event = message.get("event", "?")
    if event == "snapshot":
        execution = message.get("execution")
        subject = (f"execution={execution.get('uuid')} status={execution.get('status')}" if execution
                   else f"workspace={message.get('workspace_uuid')}")
        return f"{'-':>5} snapshot {subject} last_seq={message.get('last_seq')}"
    if event == "error":
        return f"{'-':>5} error code={message.get('code')} {message.get('message')}"
    parts = [f"{message.get('seq', '-'):>5}", str(event)]
    if message.get("execution_seq") is not None:  # workspace channel
        parts.append(f"execution={message.get('execution_uuid')}")
    if message.get("node_id"):
        parts.append(f"node={message['node_id']}")
    if message.get("status"):
        parts.append(f"status={message['status']}")
    return " ".join(parts)


def execution_url(base: str, execution_uuid: str) -> str:
    """``GET /api/v1/workflow-executions/<uuid>`` under the same base URL (http/https)."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path.rstrip('/')}/api/v1/workflow-executions/{quote(execution_uuid)}"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def fetch_execution(base: str, execution_uuid: str, token: str | None) -> dict[str, Any]:
    request = urllib.request.Request(execution_url(base, execution_uuid), headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 - the user's URL
        return json.loads(response.read())["data"]


class FinalResult:
    """What the execution channel said about the end of the run: from ``execution.finished``
    (its ``output``, or ``output_truncated``) or from a snapshot of a finished execution."""

    def __init__(self) -> None:
        self.known = False
        self.truncated = False
        self.status: str | None = None
        self.output: Any = None
        self.error: str | None = None

    def see(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "snapshot":
            execution = message.get("execution") or {}
            if execution.get("is_finished") and "output" in execution:
                self.known, self.truncated = True, False
                self.status, self.output, self.error = (execution.get("status"), execution.get("output"),
                                                        execution.get("error"))
        elif event == wire.EXECUTION_FINISHED and ("output" in message or message.get("output_truncated")):
            truncated = bool(message.get("output_truncated"))
            if truncated and self.known and not self.truncated:
                return  # the snapshot of the finished execution has the whole output already
            self.known, self.truncated = True, truncated
            self.status, self.output, self.error = message.get("status"), message.get("output"), message.get("error")

    def lines(self) -> list[str]:
        text = json.dumps(self.output, ensure_ascii=False, default=str)
        if len(text) > INLINE_OUTPUT_CHARS:
            lines = ["output:", json.dumps(self.output, ensure_ascii=False, default=str, indent=2)]
        else:
            lines = [f"output: {text}"]
        if self.error:
            lines.append(f"error: {self.error}")
        return lines


def print_final(result: FinalResult, base: str, execution_uuid: str, token: str | None, out: TextIO,
                err: TextIO) -> None:
    if result.truncated:
        try:
            execution = fetch_execution(base, execution_uuid, token)
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            print(f"watch: the output is too large for the event and could not be read from "
                  f"{execution_url(base, execution_uuid)}: {exc}", file=err)
            return
        result.output, result.error = execution.get("output"), execution.get("error")
    print("\n".join(result.lines()), file=out, flush=True)


def _close_code(frame: Any) -> tuple[int, str]:
    data = bytes(frame.data or b"")
    if len(data) < 2:
        return 1005, ""
    return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", "replace")


def follow(url: str, token: str | None, raw: bool, out: TextIO, err: TextIO,
           result: FinalResult | None = None) -> int:
    """Print every message until the server closes; ``result`` (if given) sees each of them."""
    headers = [f"Authorization: Bearer {token}"] if token else []
    try:
        ws = websocket.create_connection(url, header=headers, enable_multithread=True)
    except (OSError, websocket.WebSocketException) as exc:
        print(f"watch: cannot connect to {url}: {exc}", file=err)
        return EXIT_FAILED
    closed_by_server = False
    try:
        while True:
            try:
                opcode, frame = ws.recv_data_frame()
            except (OSError, websocket.WebSocketException) as exc:
                print(f"watch: connection lost: {exc}", file=err)
                return EXIT_FAILED
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                closed_by_server = True  # recv_data_frame already answered the close
                code, reason = _close_code(frame)
                if code == 1000:
                    return EXIT_OK
                print(f"watch: closed by server ({code}) {reason}".rstrip(), file=err)
                return EXIT_REFUSED if 4000 <= code < 5000 else EXIT_FAILED
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            text = frame.data.decode("utf-8") if isinstance(frame.data, bytes) else frame.data
            message = json.loads(text)
            if result is not None:
                result.see(message)
            print(text if raw else format_line(message), file=err if message.get("event") == "error" else out,
                  flush=True)
    finally:
        ws.shutdown() if closed_by_server else ws.close()


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.execution_uuid) == bool(args.workspace):
        parser.error("give an execution uuid or --workspace UUID (one of them)")
    if not args.token:
        parser.error("no token: pass --token or set ATHENA_TOKEN")
    url = channel_url(args.url, args.execution_uuid, args.workspace, args.after_seq)
    # The final output is printed for one execution (not a workspace); --json shows it already.
    result = FinalResult() if args.execution_uuid and not args.json else None
    try:
        code = follow(url, args.token, args.json, out, err, result)
        if code == EXIT_OK and result is not None and result.known:
            print_final(result, args.url, args.execution_uuid, args.token, out, err)
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
