"""HTTP Request: call an http(s) URL through the SSRF guard (:mod:`athena.engine.netguard`).

Every hop (the first request and each redirect, which are followed manually) is checked by
:func:`check_url` and sent through a transport pinned to the checked addresses.  The body is
streamed and capped at ``settings.http_max_response_bytes``.  A non-2xx status is a normal
result unless ``fail_on_status`` is true.

``ctx.should_stop()`` is honoured before each hop and, every
:data:`~athena.engine.interrupt.STOP_POLL_SECONDS`, during the exchange itself: the
blocking httpx call runs in a helper thread (:func:`~athena.engine.interrupt.run_interruptible`)
and a stop (or the overall timeout) shuts its sockets down, so a server that is slow to
connect, to send headers or to send the body cannot hold a stopped run.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
from marshmallow import fields as f, pre_load, validate

from athena.engine.context import NodeContext
from athena.engine.errors import NodeError, StopRequested
from athena.engine.interrupt import SocketCanceller, run_interruptible
from athena.engine.netguard import ResolvedTarget, check_url, pinned_transport
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES = frozenset({408, 425, 429})
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
USER_AGENT = "Athena-Workflow/1.0"
# The node's own timeouts (httpx's, the deadline check between chunks) normally fire first;
# past deadline + this the node thread aborts the exchange itself (e.g. headers that trickle).
DEADLINE_GRACE = 0.25
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class HttpRequestParameters(ParametersSchema):
    method = f.String(load_default="GET", validate=validate.OneOf(METHODS),
                      metadata={"description": "HTTP method."})
    url = f.String(required=True, validate=validate.Length(min=1),
                   metadata={"description": "http(s) URL; private addresses need the allowlist."})
    headers = f.Dict(keys=f.String(), values=f.Raw(allow_none=True), load_default=dict,
                     metadata={"description": "Request headers (null values are dropped)."})
    query = f.Dict(keys=f.String(), values=f.Raw(allow_none=True), load_default=dict,
                   metadata={"description": "Query parameters merged into the URL's query."})
    body = f.Raw(load_default=None, allow_none=True,
                 metadata={"description": "Request body; dict/list are sent as JSON."})
    body_type = f.String(load_default="json", validate=validate.OneOf(("json", "form", "raw")),
                         metadata={"description": "How to encode the body."})
    timeout = f.Float(load_default=None, allow_none=True,
                      validate=validate.Range(min=0, min_inclusive=False, max=3600),
                      metadata={"description": "Seconds for the whole request incl. redirects."})
    response_format = f.String(load_default="auto",
                               validate=validate.OneOf(("auto", "json", "text")),
                               metadata={"description": "How to return the response body."})
    follow_redirects = f.Boolean(load_default=True,
                                 metadata={"description": "Follow 3xx redirects (re-checked)."})
    max_redirects = f.Integer(load_default=5, validate=validate.Range(min=0, max=20),
                              metadata={"description": "Maximum redirects to follow."})
    fail_on_status = f.Boolean(load_default=False,
                               metadata={"description": "Fail the node on status >= 400."})

    @pre_load
    def _upper_method(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("method"), str):
            data = {**data, "method": data["method"].strip().upper()}
        return data


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def _headers(raw: dict[str, Any]) -> dict[str, str]:
    out = {"User-Agent": USER_AGENT}
    for name, value in raw.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        if not _TOKEN.match(name) or any(ch in text for ch in "\r\n\0"):
            raise NodeError(f"invalid header {name!r}", retryable=False)
        out = {k: v for k, v in out.items() if k.lower() != name.lower()}
        out[name] = text
    return out


def _query(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: ([_scalar(v) for v in value] if isinstance(value, list) else _scalar(value))
            for key, value in raw.items() if value is not None}


def _body(params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """httpx request kwargs for the body; may add a default Content-Type to ``headers``."""
    body, kind = params["body"], params["body_type"]
    has_type = any(k.lower() == "content-type" for k in headers)
    if body is None:
        return {}
    if kind == "form":
        if isinstance(body, dict):
            return {"data": {k: ([_scalar(x) for x in v] if isinstance(v, list) else _scalar(v))
                             for k, v in body.items() if v is not None}}
        if not isinstance(body, str):
            raise NodeError("a form body must be an object or a string", retryable=False)
        if not has_type:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return {"content": body.encode()}
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    if kind == "json" and not has_type:
        headers["Content-Type"] = "application/json"
    return {"content": text.encode()}


def _timeout(params: dict[str, Any], ctx: NodeContext, settings: dict[str, Any]) -> float:
    given = [float(t) for t in (params["timeout"], ctx.timeout) if t]
    if given:
        return min(given)
    return float(settings.get("http_default_timeout") or DEFAULT_TIMEOUT)


class _Call:
    """One node run: shared limits for all hops."""

    def __init__(self, ctx: NodeContext, timeout: float, cap: int) -> None:
        self.ctx, self.timeout, self.cap = ctx, timeout, cap
        self.deadline = time.monotonic() + timeout

    def timed_out(self, target: ResolvedTarget) -> NodeError:
        return NodeError(f"request to {target.host} timed out after {self.timeout:g} s")

    def exchange(self, target: ResolvedTarget, request_kwargs: dict[str, Any],
                 follow_redirects: bool) -> tuple[httpx.Response, bytes | None]:
        """Send one request to ``target`` (already checked), exactly once.

        Returns the response and its body, or None as body for a redirect to follow.  The
        exchange runs in a helper thread while this (the node's) thread polls
        ``ctx.should_stop()`` and the deadline; either aborts the sockets at once.
        """
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.timed_out(target)
        canceller = SocketCanceller()

        def work() -> tuple[httpx.Response, bytes | None]:
            return self._exchange(target, canceller, remaining, request_kwargs,
                                  follow_redirects)

        return run_interruptible(work, canceller, should_stop=self.ctx.should_stop,
                                 deadline=self.deadline + DEADLINE_GRACE,
                                 on_deadline=lambda: self.timed_out(target),
                                 name=f"http-{self.ctx.node_id}")

    def _exchange(self, target: ResolvedTarget, canceller: SocketCanceller, remaining: float,
                  request_kwargs: dict[str, Any],
                  follow_redirects: bool) -> tuple[httpx.Response, bytes | None]:
        """The blocking part of :meth:`exchange` (helper thread)."""
        where = f"{target.host}:{target.port}"
        try:
            with httpx.Client(transport=pinned_transport(target, dial=canceller.connect),
                              trust_env=False, follow_redirects=False,
                              timeout=httpx.Timeout(remaining)) as client:
                try:
                    request = client.build_request(**request_kwargs)
                    response = client.send(request, stream=True)
                    try:
                        status = response.status_code
                        if (follow_redirects and status in REDIRECT_STATUSES
                                and "location" in response.headers):
                            return response, None
                        return response, self.read(target, response, canceller)
                    finally:
                        response.close()
                except httpx.TimeoutException:
                    raise self.timed_out(target) from None
                except httpx.ConnectError as exc:
                    raise NodeError(f"could not connect to {where}: {exc}") from None
                except (httpx.TransportError, httpx.DecodingError) as exc:
                    raise NodeError(f"HTTP request to {where} failed: "
                                    f"{exc or type(exc).__name__}") from None
        finally:
            canceller.close()  # the client closed its sockets: release the duplicates now

    def read(self, target: ResolvedTarget, response: httpx.Response,
             canceller: SocketCanceller) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.cap:
            raise NodeError(f"response larger than {self.cap} bytes", retryable=False)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            if canceller.cancelled:  # stop or deadline seen by the node thread
                raise StopRequested()
            size += len(chunk)
            if size > self.cap:
                raise NodeError(f"response larger than {self.cap} bytes", retryable=False)
            if time.monotonic() > self.deadline:
                raise self.timed_out(target)
            chunks.append(chunk)
        return b"".join(chunks)


def _decode(raw: bytes, response: httpx.Response) -> str:
    try:
        return raw.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _parse_body(raw: bytes, response: httpx.Response, fmt: str) -> Any:
    text = _decode(raw, response)
    ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    is_json = ctype == "application/json" or ctype.endswith("+json")
    if fmt == "text" or (fmt == "auto" and not is_json):
        return text
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        if fmt == "json":
            raise NodeError("response body is not valid JSON", retryable=False) from None
        return text


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


@register
class HttpRequestNode(NodeType):
    type = "http_request"
    description = ("Make an HTTP request (SSRF-guarded; private addresses need the allowlist) "
                   "and output status, headers and body.")
    Parameters = HttpRequestParameters

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.params()
        settings: dict[str, Any] = ctx.services.get("settings") or {}
        allowlist = list(settings.get("http_allowlist") or [])
        cap = int(settings.get("http_max_response_bytes") or DEFAULT_MAX_BYTES)
        call = _Call(ctx, _timeout(params, ctx, settings), cap)
        headers = _headers(params["headers"])
        body_kwargs = _body(params, headers)
        method = params["method"]
        query = _query(params["query"]) or None
        url: str = params["url"]
        redirects = 0
        while True:
            if ctx.should_stop():
                raise StopRequested()
            target = check_url(url, allowlist)
            # httpx's params= would replace the URL's own query; merge instead.
            request_url = target.url.copy_merge_params(query) if query else target.url
            kwargs = {"method": method, "url": request_url, "headers": headers, **body_kwargs}
            response, raw = call.exchange(target, kwargs, params["follow_redirects"])
            if raw is not None:
                break
            redirects += 1
            if redirects > params["max_redirects"]:
                raise NodeError(f"too many redirects (more than {params['max_redirects']})",
                                retryable=False)
            try:
                next_url = request_url.join(response.headers["location"])
            except httpx.InvalidURL as exc:
                raise NodeError(f"invalid redirect location: {exc}", retryable=False) from None
            status = response.status_code
            if status == 303 or (status in (301, 302) and method == "POST"):
                method = "HEAD" if method == "HEAD" else "GET"
                body_kwargs = {}
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if not _same_origin(target.url, next_url):
                headers = {k: v for k, v in headers.items()
                           if k.lower() not in CREDENTIAL_HEADERS}
            url, query = str(next_url), None
        status = response.status_code
        if params["fail_on_status"] and status >= 400:
            snippet = _decode(raw[:200], response).strip()
            shown = target.url.copy_with(query=None, fragment=None)  # query may hold secrets
            raise NodeError(f"HTTP {status} {response.reason_phrase} from {shown}"
                            + (f": {snippet}" if snippet else ""),
                            retryable=status >= 500 or status in RETRYABLE_STATUSES)
        body = None if method == "HEAD" else _parse_body(raw, response, params["response_format"])
        return NodeResult({"status": status, "headers": dict(response.headers.items()),
                           "body": body})
