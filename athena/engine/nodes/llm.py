"""LLM: one chat completion from OpenAI or any OpenAI-compatible server, optionally streamed.

The call goes through the client layer the run layer hands over as ``ctx.services["llm"]``
(athena/services/llm_client.py: credentials from ``account_uuid``, else the workspace's default
account, else the environment; retries, timeout, one usage row per call with its cost). The
output's ``usage`` carries the tokens and ``cost`` (USD as a decimal string, null when unpriced).
Without that service (the engine on its own) it calls the ``settings``' OpenAI key as before.

Streaming publishes :class:`LlmTokens` events (``ctx.publish``; ``llm.token`` on the wire) as
the deltas arrive and checks ``ctx.should_stop()`` between chunks: a stop closes the HTTP
stream and ends the run. The
``openai`` package is imported on first use, so loading the engine stays cheap."""
from __future__ import annotations

import json
import time
from typing import Any

from marshmallow import ValidationError, validate, validates_schema
from marshmallow import fields as f

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError, StopRequested
from athena.engine.events import LlmTokens, LlmUsage
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register

DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
MISSING_KEY = ("OPENAI_API_KEY is not set: configure it "
               "(or OPENAI_BASE_URL for an OpenAI-compatible server)")
# Tiny deltas are batched into one llm.token event: at most this many characters, or this long.
TOKEN_BATCH_CHARS = 64
TOKEN_BATCH_SECONDS = 0.05
RETRYABLE_STATUSES = frozenset({408, 409, 429})


class LlmParameters(ParametersSchema):
    account_uuid = f.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64),
                            metadata={"description": "The account to call (GET /api/v1/accounts); default: the "
                                                     "workspace's default account, else the server's OPENAI_API_KEY."})
    model = f.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200),
                     metadata={"description": "The provider's model id (GET /api/v1/large-language-models); "
                                              "default: the server's LLM default (ATHENA_LLM_MODEL, gpt-4.1-mini)."})
    system = f.String(load_default=None, allow_none=True,
                      metadata={"description": "System message (instructions)."})
    prompt = f.String(required=True, validate=validate.Length(min=1),
                      metadata={"description": "User message; may use expressions."})
    temperature = f.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=2),
                          metadata={"description": "Sampling temperature, 0..2."})
    max_tokens = f.Integer(load_default=1024, validate=validate.Range(min=1, max=32768),
                           metadata={"description": "Upper bound on generated tokens."})
    json_schema = f.Dict(load_default=None, allow_none=True,
                         metadata={"description": "Structured output: a JSON Schema (or "
                                                  "{name, schema, strict}); the output gets 'json'."})
    json_mode = f.Boolean(load_default=False,
                          metadata={"description": "Ask for any JSON object; the output gets 'json'."})
    stream = f.Boolean(load_default=True,
                       metadata={"description": "Stream tokens as llm.token events."})

    @validates_schema
    def _one_format(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("json_schema") and data.get("json_mode"):
            raise ValidationError("use either json_schema or json_mode, not both", "json_mode")


def response_format(params: dict[str, Any]) -> dict[str, Any] | None:
    """The ``response_format`` for the request, or None for plain text."""
    schema = params.get("json_schema")
    if schema:
        if isinstance(schema.get("schema"), dict):
            spec = {"name": schema.get("name") or "output", "schema": schema["schema"]}
            for key in ("strict", "description"):
                if key in schema:
                    spec[key] = schema[key]
        else:
            spec = {"name": "output", "schema": schema}
        return {"type": "json_schema", "json_schema": spec}
    if params.get("json_mode"):
        return {"type": "json_object"}
    return None


def provider_error(exc: Exception, base_url: str, timeout: float) -> NodeError:
    """A NodeError for an ``openai`` exception: status and provider message; 429/5xx retryable."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.message
        text = f"LLM provider returned HTTP {status}: {message}"
        retry_after = exc.response.headers.get("retry-after")
        if status == 429 and retry_after:
            text += f" (retry after {retry_after}s)"
        return NodeError(text, retryable=status in RETRYABLE_STATUSES or status >= 500)
    if isinstance(exc, openai.APITimeoutError):
        return NodeError(f"LLM request timed out after {timeout:g}s ({base_url})")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return NodeError(f"could not reach the LLM server at {base_url}: {cause}")
    return NodeError(f"LLM provider error: {exc}")


class _Reply:
    __slots__ = ("text", "model", "finish_reason", "usage", "refusal")

    def __init__(self, model: str) -> None:
        self.text = ""
        self.model = model
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {"prompt_tokens": None, "completion_tokens": None,
                                      "total_tokens": None}
        self.refusal: str | None = None

    def set_usage(self, usage: Any) -> None:
        if usage is not None:
            self.usage = {key: getattr(usage, key, None) for key in self.usage}


def complete(client: Any, request: dict[str, Any]) -> _Reply:
    response = client.chat.completions.create(**request)
    reply = _Reply(response.model or request["model"])
    if not response.choices:
        raise NodeError("the LLM returned no choices")
    choice = response.choices[0]
    reply.text = choice.message.content or ""
    reply.refusal = getattr(choice.message, "refusal", None)
    reply.finish_reason = choice.finish_reason
    reply.set_usage(response.usage)
    return reply


def stream(client: Any, request: dict[str, Any], ctx: NodeContext) -> _Reply:
    """Read the SSE stream, emitting batched ``llm.token`` events; stop closes the stream."""
    chunks = client.chat.completions.create(**request, stream=True,
                                            stream_options={"include_usage": True})
    reply = _Reply(request["model"])
    parts: list[str] = []
    pending: list[str] = []
    last_emit = float("-inf")

    def flush() -> None:
        nonlocal last_emit
        if pending:
            ctx.publish(LlmTokens(node_id=ctx.node_id, text="".join(pending)))
            pending.clear()
            last_emit = time.monotonic()

    try:
        for chunk in chunks:
            reply.model = chunk.model or reply.model
            reply.set_usage(getattr(chunk, "usage", None))
            for choice in chunk.choices or ():
                if choice.index != 0:
                    continue
                delta = choice.delta
                if delta is not None and delta.content:
                    parts.append(delta.content)
                    pending.append(delta.content)
                if delta is not None and getattr(delta, "refusal", None):
                    reply.refusal = (reply.refusal or "") + delta.refusal
                if choice.finish_reason:
                    reply.finish_reason = choice.finish_reason
            if pending and (sum(map(len, pending)) >= TOKEN_BATCH_CHARS
                            or time.monotonic() - last_emit >= TOKEN_BATCH_SECONDS):
                flush()
            if ctx.should_stop():
                raise StopRequested()
        flush()
    finally:
        chunks.close()
    reply.text = "".join(parts)
    return reply


@register
class LlmNode(NodeType):
    type = "llm"
    description = ("Ask a large language model (OpenAI or any OpenAI-compatible server) for a chat "
                   "completion; optional JSON / JSON-schema structured output; streams tokens.")
    Parameters = LlmParameters

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.params()
        settings: dict[str, Any] = ctx.services.get("settings") or {}
        gateway = ctx.services.get("llm")  # the client layer (athena/services/llm_client.py)
        timeout = float(settings.get("llm_timeout") or 120.0)
        if ctx.timeout:
            timeout = min(timeout, float(ctx.timeout))
        if gateway is not None:
            # Raises NodeError: nothing configured, an unknown account, a blocked base URL.
            client = gateway.client(node_id=ctx.node_id, account_uuid=params["account_uuid"],
                                    model=params["model"], timeout=timeout)
            base_url = client.base_url
        else:
            api_key = settings.get("openai_api_key")
            base_url = settings.get("openai_base_url") or DEFAULT_BASE_URL
            if not api_key and not settings.get("openai_base_url"):
                raise NodeError(MISSING_KEY, retryable=False)
        model = params["model"] or settings.get("llm_default_model") or DEFAULT_MODEL
        messages = ([{"role": "system", "content": params["system"]}] if params["system"] else [])
        messages.append({"role": "user", "content": params["prompt"]})
        request: dict[str, Any] = {"model": model, "messages": messages,
                                   "max_tokens": params["max_tokens"]}
        if params["temperature"] is not None:
            request["temperature"] = params["temperature"]
        fmt = response_format(params)
        if fmt is not None:
            request["response_format"] = fmt

        import openai

        if gateway is None:
            # An OpenAI-compatible server may need no key; the client insists on a non-empty one.
            client = openai.OpenAI(api_key=api_key or "unused", base_url=base_url, timeout=timeout,
                                   max_retries=0)
        try:
            with client:
                reply = (stream(client, request, ctx) if params["stream"]
                         else complete(client, request))
        except openai.OpenAIError as exc:
            raise provider_error(exc, base_url, timeout) from None
        recorded = getattr(client, "last_usage", None)  # the client layer's usage row: tokens and cost
        if recorded is not None:
            reply.usage = {**reply.usage, "cost": recorded.get("cost")}

        output: dict[str, Any] = {"text": reply.text, "usage": reply.usage, "model": reply.model,
                                  "finish_reason": reply.finish_reason}
        ctx.publish(LlmUsage(node_id=ctx.node_id, usage=reply.usage, model=reply.model))
        if fmt is not None:
            output["json"] = parse_json(reply)
        return NodeResult(output)


def parse_json(reply: _Reply) -> Any:
    if reply.refusal and not reply.text:
        raise NodeError(f"the model refused to answer: {reply.refusal}", retryable=False)
    try:
        return json.loads(reply.text)
    except ValueError as exc:
        hint = " (finish_reason 'length': raise max_tokens)" if reply.finish_reason == "length" else ""
        raise NodeError(f"the model's reply is not valid JSON: {exc}{hint}") from None
