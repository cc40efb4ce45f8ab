"""An OpenAI-compatible chat-completions server for tests, speaking the real wire protocol.

``GET /v1/models`` lists ``models`` (OpenAI's ``{"object": "list", "data": [...]}``).
``valid_keys``: when not empty, a bearer key outside it is refused with OpenAI's 401 (models and
chat alike). ``POST /v1/chat/completions`` answers from a queue of scripted :class:`Reply` objects: a JSON
``chat.completion`` when the request has no ``stream``, otherwise ``text/event-stream`` chunks
(``chat.completion.chunk`` objects, a final usage chunk when ``stream_options.include_usage``,
then ``data: [DONE]``) over chunked transfer encoding. Errors use OpenAI's body
``{"error": {"message", "type", "param", "code"}}``. Every request is recorded (body, messages,
model, response_format) together with how many stream chunks were sent and whether the client
hung up early, so tests can assert both what Athena sent and that it stopped reading.

The server runs in a thread of the test process on a port fixed at session start, so the RQ
worker process reaches it through ``OPENAI_BASE_URL`` and scripting from a test is shared.
Fixtures: ``fake_openai_server`` (session), ``fake_openai`` (emptied per test), ``fake_openai_app``
(``fake_openai`` with the in-process app's OPENAI_API_KEY/OPENAI_BASE_URL pointed at it)."""
from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

FINGERPRINT = "fp_fake_openai"


@dataclass
class Reply:
    """One scripted answer. ``chunks`` are the streamed content deltas (default: ``text`` split
    in pieces of ``chunk_size``); ``delay`` is the pause before each streamed chunk."""

    text: str = ""
    status: int = 200
    error_message: str = ""
    error_type: str | None = None
    error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[str] | None = None
    chunk_size: int = 4
    delay: float = 0.0
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None
    # [{"name": ..., "arguments": {...}}]: the assistant calls these tools (finish_reason tool_calls)
    tool_calls: list[dict[str, Any]] | None = None
    # The server accepts the request and never answers (until the client gives up or reset()).
    hang: bool = False

    def deltas(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return [self.text[i:i + self.chunk_size] for i in range(0, len(self.text), self.chunk_size)]


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]
    chunks_scripted: int = 0
    chunks_sent: int = 0
    disconnected: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    messages: list[dict[str, Any]] = field(init=False)
    model: str | None = field(init=False)
    response_format: dict[str, Any] | None = field(init=False)
    stream: bool = field(init=False)

    def __post_init__(self) -> None:
        self.messages = self.body.get("messages") or []
        self.model = self.body.get("model")
        self.response_format = self.body.get("response_format")
        self.stream = bool(self.body.get("stream"))


def _usage(request: RecordedRequest, reply: Reply) -> dict[str, int]:
    if reply.usage is not None:
        return dict(reply.usage)
    prompt, completion = sum(len(str(m.get("content", "")).split()) for m in request.messages), len(reply.deltas())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any  # a ThreadingHTTPServer with a ``fake`` attribute

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, type_: str | None = None, code: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        error = {"message": message, "type": type_ or "invalid_request_error", "param": None, "code": code}
        self._send_json(status, {"error": error}, headers)

    def _refused_key(self) -> bool:
        """OpenAI's 401 for a missing key, or one outside ``valid_keys`` (when set)."""
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            self._error(401, "You didn't provide an API key.", code="invalid_api_key")
            return True
        key = auth[len("Bearer "):]
        if self.server.fake.valid_keys and key not in self.server.fake.valid_keys:
            shown = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else "*****"
            self._error(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                             "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        fake = self.server.fake
        record = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, {})
        with fake._lock:
            fake.model_requests.append(record)
        if self.path.split("?")[0].rstrip("/") != "/v1/models":
            self._error(404, f"Unknown request URL: GET {self.path}.", code="unknown_url")
            return
        if self._refused_key():
            return
        created = int(time.time())
        data = [{"id": model, "object": "model", "created": created, "owned_by": fake.owned_by}
                for model in fake.models]
        self._send_json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
            self._error(404, f"Unknown request URL: POST {self.path}.", code="unknown_url")
            return
        if self._refused_key():
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("model") or not isinstance(body.get("messages"), list):
            self._error(400, "A JSON body with 'model' and 'messages' is required.")
            return
        record = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        reply = self.server.fake.take(record)
        try:
            if reply.hang:
                self.server.fake.released.wait(120)  # until reset(): the client's timeout ends it first
                record.disconnected = True
                self.close_connection = True
                return
            if reply.status >= 400:
                self._error(reply.status, reply.error_message or f"fake error {reply.status}",
                            reply.error_type or ("requests" if reply.status == 429 else "server_error"),
                            reply.error_code, reply.headers)
            elif record.stream:
                self._stream(record, reply)
            else:
                self._complete(record, reply)
        except (BrokenPipeError, ConnectionResetError):
            record.disconnected = True
            self.close_connection = True
        finally:
            record.finished.set()

    def _complete(self, record: RecordedRequest, reply: Reply) -> None:
        record.chunks_scripted = 1
        text = "".join(reply.deltas())
        message = {"role": "assistant", "content": (text or None) if reply.tool_calls else text, "refusal": None,
                   "annotations": []}
        if reply.tool_calls:
            message["tool_calls"] = [{"id": f"call_{index}_{uuid.uuid4().hex[:8]}", "type": "function",
                                      "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}
                                     for index, call in enumerate(reply.tool_calls)]
        payload = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                   "created": int(time.time()), "model": record.model, "system_fingerprint": FINGERPRINT,
                   "choices": [{"index": 0, "message": message, "logprobs": None,
                                "finish_reason": reply.finish_reason}],
                   "usage": _usage(record, reply), "service_tier": "default"}
        self._send_json(200, payload, reply.headers)
        record.chunks_sent = 1

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stream(self, record: RecordedRequest, reply: Reply) -> None:
        include_usage = bool((record.body.get("stream_options") or {}).get("include_usage"))
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": record.model, "system_fingerprint": FINGERPRINT,
                "service_tier": "default"}

        def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
            payload = {**base, "choices": choices}
            if include_usage:
                payload["usage"] = usage
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        deltas = reply.deltas()
        frames = [chunk(choice({"role": "assistant", "content": "", "refusal": None}))]
        frames += [chunk(choice({"content": d})) for d in deltas]
        for index, call in enumerate(reply.tool_calls or ()):
            frames.append(chunk(choice({"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                                                        "function": {"name": call["name"],
                                                                     "arguments": json.dumps(call["arguments"])}}]})))
        frames.append(chunk(choice({}, reply.finish_reason)))
        if include_usage:
            frames.append(chunk([], _usage(record, reply)))
        frames.append(b"data: [DONE]\n\n")
        record.chunks_scripted = len(deltas)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        for index, frame in enumerate(frames):
            is_delta = 1 <= index <= len(deltas)
            if is_delta and reply.delay:
                time.sleep(reply.delay)
            if self._client_gone():
                record.disconnected = True
                self.close_connection = True
                return
            self._write_chunk(frame)
            if is_delta:
                record.chunks_sent += 1
        self._write_chunk(b"")


class FakeOpenAI:
    """The scriptable server. ``url`` is the root, ``base_url`` the ``/v1`` API base."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads, self._server.fake = True, self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Condition()
        self._replies: list[Reply] = []
        self.default: Reply | None = None
        self.requests: list[RecordedRequest] = []
        self.model_requests: list[RecordedRequest] = []  # GET /v1/models (and other GETs)
        self.models: list[str] = ["gpt-4.1-mini", "gpt-4o", "llama3.1:8b", "my-finetune"]
        self.owned_by = "fake-openai"
        self.valid_keys: set[str] = set()
        self.released = threading.Event()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.url}/v1"

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- scripting -----------------------------------------------------------------------------
    def reset(self) -> None:
        self.released.set()  # hanging requests end
        with self._lock:
            self._replies.clear()
            self.requests.clear()
            self.model_requests.clear()
            self.models = ["gpt-4.1-mini", "gpt-4o", "llama3.1:8b", "my-finetune"]
            self.owned_by = "fake-openai"
            self.valid_keys = set()
            self.default = None
        self.released = threading.Event()

    def reply(self, text: str = "", **kwargs: Any) -> Reply:
        """Queue a reply (text; or ``status=429, error_message=...``; ``delay=`` for slow streams)."""
        reply = Reply(text=text, **kwargs)
        with self._lock:
            self._replies.append(reply)
        return reply

    def reply_json(self, value: Any, **kwargs: Any) -> Reply:
        return self.reply(json.dumps(value), **kwargs)

    def reply_tool_calls(self, calls: list[dict[str, Any]], **kwargs: Any) -> Reply:
        """Queue an assistant turn calling tools: ``[{"name": ..., "arguments": {...}}]``."""
        return self.reply("", tool_calls=calls, finish_reason="tool_calls", **kwargs)

    def hang(self) -> Reply:
        """Queue a request that is never answered (the client's timeout must end it)."""
        return self.reply(hang=True)

    def reply_error(self, status: int, message: str = "", **kwargs: Any) -> Reply:
        """Queue an HTTP error with OpenAI's error body (``headers=`` e.g. ``retry-after``)."""
        return self.reply(status=status, error_message=message, **kwargs)

    def take(self, record: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(record)
            self._lock.notify_all()
            if self._replies:
                return self._replies.pop(0)
            if self.default is not None:
                return self.default
        return Reply(status=500, error_message="fake_openai: no scripted reply left", error_type="server_error")

    # -- observing -----------------------------------------------------------------------------
    @property
    def last(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[RecordedRequest]:
        """Block until ``count`` requests arrived (the bound is a safety net only)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"fake_openai: expected {count} request(s), got {len(self.requests)}")
            return list(self.requests)

    def wait_finished(self, record: RecordedRequest, timeout: float = 30.0) -> RecordedRequest:
        if not record.finished.wait(timeout):
            raise AssertionError("fake_openai: the request never finished")
        return record


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The session's fake server with an empty script and no recorded requests."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture
def fake_openai_app(app: Any, fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """Also point the in-process ``app`` (the API) at the fake server; config restored after."""
    saved = {key: app.config.get(key) for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    app.config.update(OPENAI_API_KEY="test-key", OPENAI_BASE_URL=fake_openai.base_url)
    try:
        yield fake_openai
    finally:
        app.config.update(saved)
