"""Generate a workflow from a natural-language prompt with an OpenAI-compatible model.

:class:`Generation` yields ``(event, data)`` pairs: ``start``, ``token`` (model deltas, streaming
only), ``validation``, ``repair``, ``workflow``, ``created`` and ``heartbeat`` (the model is silent).
An invalid answer goes back to the model with the validator's errors for up to
:data:`MAX_REPAIRS` rounds. In streaming mode a background thread reads the model's stream, so
heartbeats flow while the model is silent and closing the generator (the client left) stops
reading the model at its next chunk."""
from __future__ import annotations

import queue
import threading
import time
import uuid as uuid_lib
from dataclasses import dataclass, field
from typing import Any, Iterator

from flask import current_app

from athena.engine import registry
from athena.errors import DomainError, NotConfigured, NotFound
from athena.models import User, Workspace
from athena.services.generate_prompt import Errors, read_candidate, repair_message, response_format, system_prompt
from athena.services.llm_client import Caller, LlmClient, client_for
from athena.services.workflows import create_workflow

MAX_REPAIRS = 2
HEARTBEAT_SECONDS = 10.0
NOT_CONFIGURED = ("Workflow generation needs a language model: add an account to the workspace (POST "
                  "/api/v1/accounts) or set OPENAI_API_KEY (or OPENAI_BASE_URL for an OpenAI-compatible server) "
                  "in the server's environment.")


@dataclass
class GenerateError(Exception):
    """Ends a generation; ``status`` is the HTTP status the API answers with."""

    status: int
    message: str
    errors: Errors | None = None
    candidate: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        if self.candidate is not None:
            body["candidate"] = self.candidate
        return body


@dataclass
class Settings:
    api_key: str | None
    base_url: str | None
    model: str
    timeout: float
    max_nodes: int
    heartbeat: float

    @classmethod
    def from_app(cls, model: str | None = None) -> Settings:
        config = current_app.config
        timeout = float(config.get("LLM_TIMEOUT") or 120.0)
        return cls(api_key=config.get("OPENAI_API_KEY"), base_url=config.get("OPENAI_BASE_URL"),
                   model=model or config.get("LLM_DEFAULT_MODEL") or "gpt-4.1-mini", timeout=timeout,
                   max_nodes=int(config["MAX_NODES_PER_WORKFLOW"]),
                   heartbeat=float(config.get("GENERATE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)))

    @property
    def target(self) -> str:
        return self.base_url or "https://api.openai.com/v1"


def model_error(exc: Exception, settings: Settings) -> GenerateError:
    """Map an error of the client layer (or an ``openai`` exception) to what the API answers: 429
    passed on with Retry-After, 422 for a refused account key, 503/504/502 otherwise."""
    import openai

    if isinstance(exc, DomainError):
        return GenerateError(exc.status, exc.message, headers=dict(exc.headers))
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = body.get("message") or exc.message
        if exc.status_code == 429:
            retry_after = exc.response.headers.get("retry-after")
            return GenerateError(429, f"The model provider is rate limiting requests: {detail}",
                                 headers={"Retry-After": retry_after} if retry_after else {})
        if exc.status_code in (401, 403):
            return GenerateError(503, f"The model provider rejected the credentials ({detail}): "
                                      "check OPENAI_API_KEY.")
        return GenerateError(502, f"The model provider answered HTTP {exc.status_code}: {detail}")
    if isinstance(exc, openai.APITimeoutError):
        return GenerateError(504, f"The model at {settings.target} did not answer within {settings.timeout:g}s.")
    if isinstance(exc, openai.APIConnectionError):
        return GenerateError(503, f"The model server at {settings.target} is unreachable: check "
                                  "OPENAI_BASE_URL (and that the server is running).")
    return GenerateError(502, f"The model provider failed: {exc}")


class StreamReader:
    """One streamed completion read by a daemon thread into a queue."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stopped = threading.Event()
        threading.Thread(target=self._read, daemon=True, name="generate-model-stream").start()

    def _read(self) -> None:
        try:
            for chunk in self.stream:
                if self.stopped.is_set():
                    break
                for choice in chunk.choices or ():
                    if choice.index == 0 and choice.delta is not None and choice.delta.content:
                        self.items.put(("delta", choice.delta.content))
            self.items.put(("end", None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            self.items.put(("error", exc))
        finally:
            self.stream.close()

    def stop(self) -> None:
        """Stop reading: the thread closes the model's HTTP stream at its next chunk."""
        self.stopped.set()


class Generation:
    def __init__(self, user: User, workspace: Workspace, body: dict[str, Any]) -> None:
        self.user = user
        self.workspace = workspace
        self.body = body
        self.settings = Settings.from_app(body.get("model"))
        self.stream = bool(body.get("stream"))
        self.uuid = str(uuid_lib.uuid4())  # the caller id of this generation's usage rows
        caller = Caller(workspace.id, user.id, "generation", self.uuid)
        try:
            self.client: LlmClient = client_for(caller, account_uuid=body.get("account_uuid"),
                                                model=self.settings.model, timeout=self.settings.timeout)
        except NotConfigured:
            raise GenerateError(503, NOT_CONFIGURED) from None
        except NotFound as exc:  # like any other uuid of the caller's that is not there
            raise GenerateError(404, exc.message, errors={"account_uuid": [exc.message]}) from None
        except DomainError as exc:  # e.g. a base URL the SSRF guard refuses
            raise GenerateError(exc.status, exc.message, headers=dict(exc.headers)) from None
        self.settings.base_url = self.client.base_url
        self.deadline = time.monotonic() + self.settings.timeout * (MAX_REPAIRS + 1)
        self.messages: list[dict[str, str]] = [{"role": "system", "content": system_prompt(registry)},
                                               {"role": "user", "content": body["prompt"]}]
        self.first: StreamReader | None = None

    def _request(self, stream: bool) -> Any:
        import openai

        try:
            return self.client.chat.completions.create(
                model=self.settings.model, messages=self.messages, response_format=response_format(registry),
                stream=stream)
        except (openai.OpenAIError, DomainError) as exc:
            raise model_error(exc, self.settings) from None

    def open(self) -> None:
        """Streaming: make the first model request now, so its failure is a plain HTTP error."""
        if self.stream:
            try:
                self.first = StreamReader(self._request(stream=True))
            except GenerateError:
                self.client.close()
                raise

    def _ask(self, round_: int) -> Iterator[tuple[str, Any]]:
        """One model answer: yields token/heartbeat events, returns the full text."""
        if not self.stream:
            response = self._request(stream=False)
            choice = response.choices[0] if response.choices else None
            return (choice.message.content or "") if choice else ""
        reader, self.first = self.first or StreamReader(self._request(stream=True)), None
        parts: list[str] = []
        try:
            while True:
                wait = min(self.settings.heartbeat, self.deadline - time.monotonic())
                if wait <= 0:
                    limit = self.settings.timeout * (MAX_REPAIRS + 1)
                    raise GenerateError(504, f"The generation did not finish within {limit:g}s.")
                try:
                    kind, value = reader.items.get(timeout=wait)
                except queue.Empty:
                    yield "heartbeat", None
                    continue
                if kind == "delta":
                    parts.append(value)
                    yield "token", {"round": round_, "text": value}
                elif kind == "error":
                    raise model_error(value, self.settings)
                else:
                    return "".join(parts)
        finally:
            reader.stop()

    def events(self) -> Iterator[tuple[str, Any]]:
        """Run the generation; raises :class:`GenerateError` (422 when never valid)."""
        try:
            yield "start", {"model": self.settings.model, "workspace_uuid": self.workspace.uuid,
                            "max_rounds": MAX_REPAIRS + 1}
            fallback = " ".join(self.body["prompt"].split())[:80] or "Generated workflow"
            candidate: Any = None
            errors: Errors = {}
            for round_ in range(MAX_REPAIRS + 1):
                if round_:
                    yield "repair", {"round": round_, "errors": errors}
                text = yield from self._ask(round_)
                candidate, errors = read_candidate(text, registry, self.settings.max_nodes, fallback)
                yield "validation", {"round": round_, "valid": not errors, "errors": errors}
                if not errors:
                    break
                self.messages += [{"role": "assistant", "content": text},
                                  {"role": "user", "content": repair_message(errors)}]
            else:
                raise GenerateError(422, f"The model did not produce a valid workflow in {MAX_REPAIRS + 1} "
                                         "attempts.", errors=errors, candidate=candidate if candidate else text)
            yield "workflow", {"workflow": candidate}
            if self.body.get("auto_create"):
                yield "created", self.create(candidate)
        finally:
            if self.first is not None:
                self.first.stop()
            if not self.stream:  # a stream reader thread closes its own HTTP stream
                self.client.close()

    def create(self, workflow: dict[str, Any]) -> Any:
        body = {"workspace_uuid": self.workspace.uuid, **workflow}
        if self.body.get("visibility"):
            body["visibility"] = self.body["visibility"]
        return create_workflow(self.user, body)
