"""Respond to webhook: the HTTP answer of a webhook call made with ``?wait=true``.

The node outputs the evaluated response ``{"status", "headers", "body"}``; the webhook API
answers with it as soon as the node has finished (see :func:`render`). Headers are sanitised
twice (here and again by the API): hop-by-hop headers, ``Content-Length``, ``Set-Cookie`` and
friends are dropped, and a name or value carrying CR/LF/control characters fails the node."""
from __future__ import annotations

import json
import re
from typing import Any

from marshmallow import fields, validate

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register

# Never set by a workflow: connection-level (hop-by-hop), computed by the server, or a way to
# plant cookies / lie about the body's framing or encoding.
FORBIDDEN_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "content-encoding",
    "set-cookie", "set-cookie2", "host",
})
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is allowed, CR/LF/NUL... are not
MAX_HEADERS = 50
MAX_HEADER_VALUE = 8192


class HeaderError(ValueError):
    pass


def sanitize_headers(headers: Any, *, strict: bool = True) -> dict[str, str]:
    """Headers safe to send: forbidden names dropped; bad names/values raise (``strict``) or are
    dropped. Scalar values become strings; other values are refused."""
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        if strict:
            raise HeaderError("headers must be an object")
        return {}
    clean: dict[str, str] = {}
    for name, value in headers.items():
        problem = _header_problem(name, value)
        if problem:
            if strict:
                raise HeaderError(problem)
            continue
        if name.lower() in FORBIDDEN_HEADERS or value is None:
            continue
        if len(clean) >= MAX_HEADERS:
            if strict:
                raise HeaderError(f"at most {MAX_HEADERS} headers")
            break
        clean[name] = _header_text(value)
    return clean


def _header_problem(name: Any, value: Any) -> str | None:
    if not isinstance(name, str) or not TOKEN.match(name):
        return f"invalid header name {str(name)[:64]!r}"
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return f"header {name!r}: the value must be a string or a number"
    text = _header_text(value)
    if CONTROL.search(text):
        return f"header {name!r}: the value may not contain line breaks or control characters"
    if len(text) > MAX_HEADER_VALUE:
        return f"header {name!r}: the value is longer than {MAX_HEADER_VALUE} characters"
    return None


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(response: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (with a Content-Type) and body bytes of a respond node's output.

    dict/list bodies are JSON; None is empty; anything else is text."""
    status = response.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        status = 200
    headers = sanitize_headers(response.get("headers"), strict=False)
    body = response.get("body")
    has_type = any(name.lower() == "content-type" for name in headers)
    if isinstance(body, (dict, list)):
        data = json.dumps(body, ensure_ascii=False, default=str).encode()
        default_type = "application/json"
    elif body is None:
        data, default_type = b"", "text/plain; charset=utf-8"
    else:
        text = ("true" if body else "false") if isinstance(body, bool) else str(body)
        data, default_type = text.encode(), "text/plain; charset=utf-8"
    if not has_type:
        headers["Content-Type"] = default_type
    return status, headers, data


class RespondParameters(ParametersSchema):
    status = fields.Integer(load_default=200, validate=validate.Range(min=200, max=599),
                            metadata={"description": "HTTP status code (200-599)."})
    headers = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), load_default=dict,
                          metadata={"description": "Response headers; values may be expressions. "
                                                   "Hop-by-hop, Content-Length and Set-Cookie are dropped."})
    body = fields.Raw(allow_none=True, load_default=None,
                      metadata={"description": "Response body: an object/array is sent as JSON, "
                                               "anything else as text. Expressions allowed."})


@register
class RespondToWebhook(NodeType):
    type = "respond_to_webhook"
    description = "Set the HTTP response of a webhook call made with ?wait=true (status, headers, body)."
    Parameters = RespondParameters

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.params()
        try:
            headers = sanitize_headers(params["headers"])
        except HeaderError as exc:
            raise NodeError(f"node '{ctx.node_id}': {exc}", retryable=False) from None
        return NodeResult({"status": params["status"], "headers": headers, "body": params["body"]})
