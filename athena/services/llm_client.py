"""The one client layer for every model call (docs/llm.md).

1. **Credentials** (:func:`resolve_credentials`): the account named by ``account_uuid`` (in the
   caller's workspace), else the workspace's default account, else the environment's
   ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` as before accounts existed; none of them is
   :class:`athena.errors.NotConfigured` (503).
2. **The call** (:class:`LlmClient`): the real ``openai`` client on the credentials' base URL
   (through the SSRF guard under ATHENA_ENV=production unless the host is in
   ATHENA_LLM_ALLOWLIST), a timeout, retries with exponential backoff on 429/5xx and unreachable
   servers (a ``Retry-After`` longer than ATHENA_LLM_RETRY_MAX_WAIT is passed on at once), and
   streaming. ``client.chat.completions.create(**request)`` has the ``openai`` client's shape, so
   callers (the ``llm`` node, Generate Workflow) read responses and streams as they always did.
3. **Usage** (:class:`UsageRecorder`): one ``llm_usages`` row per call, success or not:
   workspace, user, caller (``execution_node``, ``generation``, ``prompt_run``, ``agent_run``
   + its id), model, tokens, cost in USD (``Decimal``; NULL for an unpriced model), latency,
   status. Written in its own short session, so a caller's transaction is never involved.

Provider failures are :class:`athena.errors.ProviderFailure` subclasses (422 refused key, 429
with ``Retry-After``, 503 unreachable, 504 timeout, 502 otherwise); a caller may translate them
(the node turns them into ``NodeError``). Secrets never leave this module but to the provider:
no log line, event, job argument or usage row carries them.

The run layer merges :func:`llm_services` into the services it hands the engine."""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import httpx
from flask import Flask, current_app
from sqlalchemy import select

from athena.crypto import UndecryptableSecret, decrypt, is_encrypted
from athena.engine.errors import NodeError
from athena.engine.netguard import BlockedTarget, check_url, pinned_transport
from athena.errors import (
    NotConfigured, NotFound, ProviderFailure, ProviderRateLimited, ProviderRefused, ProviderTimeout,
    ProviderUnreachable,
)
from athena.extensions import db
from athena.models import Account, LargeLanguageModel, LlmUsage, WorkflowExecution
from athena.services.llm_catalog import price_of

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
NOT_CONFIGURED = ("No language model is configured for this workspace: add an account (POST /api/v1/accounts, "
                  "docs/llm.md) or set OPENAI_API_KEY (or OPENAI_BASE_URL for an OpenAI-compatible server) in "
                  "the server's environment.")
ACCOUNT_NOT_FOUND = "No such account in this workspace: {uuid}."
MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class Credentials:
    """Where and how to call a model. ``repr`` shows no secret."""

    api_key: str | None = field(repr=False)
    base_url: str
    organization: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict, repr=False)
    account_id: int | None = None
    account_uuid: str | None = None
    provider_slug: str | None = None
    source: str = "environment"  # "account", "default_account", "environment"

    @property
    def where(self) -> str:
        """What to check when the provider cannot be reached or refuses."""
        if self.source == "environment":
            return "OPENAI_BASE_URL" if self.base_url != OPENAI_BASE_URL else "OPENAI_API_KEY"
        return f"account {self.account_uuid}"


def _clear(value: Any, what: str) -> Any:
    if isinstance(value, str) and is_encrypted(value):
        return decrypt(value, what)
    if isinstance(value, dict):
        return {key: _clear(item, f"{what}.{key}") for key, item in value.items()}
    return value


def account_credentials(account: Account, source: str = "account") -> Credentials:
    """The account's credentials, decrypted (raises NotConfigured when no key opens them)."""
    stored = dict(account.credentials or {})
    try:
        clear = {key: _clear(value, f"account {account.uuid}: credentials.{key}") for key, value in stored.items()}
    except UndecryptableSecret as exc:
        raise NotConfigured(str(exc)) from None
    provider = account.provider
    return Credentials(api_key=clear.get("api_key") or None,
                       base_url=(clear.get("base_url") or provider.base_url or OPENAI_BASE_URL).rstrip("/"),
                       organization=clear.get("organization") or None,
                       extra_headers={str(k): str(v) for k, v in (clear.get("extra_headers") or {}).items()},
                       account_id=account.id, account_uuid=account.uuid, provider_slug=provider.slug, source=source)


def _live_accounts(workspace_id: int):
    return select(Account).where(Account.workspace_id == workspace_id, Account.deleted_at.is_(None))


def resolve_credentials(workspace_id: int | None, account_uuid: str | None = None) -> Credentials:
    """The account named (404 unless it is a live account of the workspace), else the workspace's
    default account, else the environment; NotConfigured (503) when there is none."""
    if account_uuid:
        account = None if workspace_id is None else db.session.execute(
            _live_accounts(workspace_id).where(Account.uuid == str(account_uuid))).scalar_one_or_none()
        if account is None:
            message = ACCOUNT_NOT_FOUND.format(uuid=account_uuid)
            raise NotFound(message, errors={"account_uuid": [message]})
        return account_credentials(account)
    if workspace_id is not None:
        account = db.session.execute(_live_accounts(workspace_id).where(Account.is_default.is_(True))
                                     .order_by(Account.id.desc()).limit(1)).scalar_one_or_none()
        if account is not None:
            return account_credentials(account, "default_account")
    config = current_app.config
    if not config.get("OPENAI_API_KEY") and not config.get("OPENAI_BASE_URL"):
        raise NotConfigured(NOT_CONFIGURED)
    return Credentials(api_key=config.get("OPENAI_API_KEY"),
                       base_url=(config.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/"))


# -- errors ---------------------------------------------------------------------------------------


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` value (seconds or an HTTP date) in seconds, or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def provider_failure(exc: Exception, credentials: Credentials, timeout: float) -> ProviderFailure:
    """The domain error for an ``openai`` exception (or the SSRF guard's refusal)."""
    import openai

    if isinstance(exc, (UnicodeError, httpx.InvalidURL)):
        message = f"The credentials cannot be sent to the provider: {exc}"
        return ProviderRefused(message, errors={"credentials": [message]})
    if isinstance(exc, BlockedTarget):
        message = f"The base URL may not be used: {exc.message}; add its host to ATHENA_LLM_ALLOWLIST to permit it."
        return ProviderUnreachable(message, errors={"credentials.base_url": [message]})
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = body.get("message") or exc.message
        status = exc.status_code
        if status in (401, 403):
            message = f"The provider refused the key: {detail}"
            return ProviderRefused(message, errors={"credentials.api_key": [message]})
        if status == 429:
            retry_after = exc.response.headers.get("retry-after")
            suffix = f" (retry after {retry_after}s)" if retry_after else ""
            return ProviderRateLimited(f"LLM provider returned HTTP 429: {detail}{suffix}", retryable=True,
                                       headers={"Retry-After": _whole_seconds(retry_after)} if retry_after else None)
        return ProviderFailure(f"LLM provider returned HTTP {status}: {detail}",
                               retryable=status >= 500 or status in (408, 409))
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(f"LLM request timed out after {timeout:g}s: the model at {credentials.base_url} "
                               f"did not answer within {timeout:g}s.", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        message = (f"The model server at {credentials.base_url} is unreachable ({cause}): check "
                   f"{credentials.where} (and that the server is running).")
        return ProviderUnreachable(message, retryable=True, errors={"credentials.base_url": [message]})
    return ProviderFailure(f"The model provider failed: {exc}")


def _whole_seconds(value: str) -> str:
    seconds = retry_after_seconds(value)
    return value if seconds is None else str(math.ceil(seconds))


def node_error(failure: ProviderFailure | NotConfigured | NotFound) -> NodeError:
    """What the ``llm`` node raises for a domain error of this layer."""
    return NodeError(failure.message, retryable=bool(getattr(failure, "retryable", False)))


# -- usage ----------------------------------------------------------------------------------------


@dataclass
class Caller:
    """Who makes the call, for its usage row."""

    workspace_id: int | None
    user_id: int | None
    caller_type: str  # execution_node, generation, prompt_run, agent_run
    caller_id: str | None = None
    node_id: str | None = None


def cost_of(input_tokens: int | None, output_tokens: int | None,
            prices: tuple[Decimal | None, Decimal | None]) -> Decimal | None:
    """USD for the tokens, or None when the model is unpriced or the tokens are unknown."""
    price_in, price_out = prices
    if price_in is None or price_out is None or input_tokens is None or output_tokens is None:
        return None
    return ((Decimal(input_tokens) * price_in + Decimal(output_tokens) * price_out) / MILLION).quantize(COST_QUANTUM)


def prices_for(account_id: int | None, model: str) -> tuple[Decimal | None, Decimal | None]:
    """The synced model row's prices (an account's), else the shipped table's."""
    if account_id is not None:
        row = db.session.execute(select(LargeLanguageModel.input_price_per_million,
                                        LargeLanguageModel.output_price_per_million)
                                 .where(LargeLanguageModel.account_id == account_id,
                                        LargeLanguageModel.model_id == model,
                                        LargeLanguageModel.deleted_at.is_(None))).first()
        if row is not None:
            return row[0], row[1]
    return price_of(model)


def _tokens(usage: Any) -> tuple[int | None, int | None, int | None]:
    if usage is None:
        return None, None, None
    get = usage.get if isinstance(usage, dict) else (lambda key: getattr(usage, key, None))
    return get("prompt_tokens"), get("completion_tokens"), get("total_tokens")


class UsageRecorder:
    """Writes usage rows in a fresh app context (its own session), from any thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def record(self, caller: Caller, credentials: Credentials, model: str, usage: Any, *, started: float,
               status: str, error: str | None = None, attempts: int = 1, stream: bool = False) -> dict[str, Any]:
        """Write the row; returns the usage as callers show it (tokens, ``cost`` as a string or None)."""
        input_tokens, output_tokens, total = _tokens(usage)
        if total is None and input_tokens is not None and output_tokens is not None:
            total = input_tokens + output_tokens
        latency_ms = int((time.monotonic() - started) * 1000)
        cost: Decimal | None = None
        uuid = None
        try:
            with self.app.app_context():
                cost = cost_of(input_tokens, output_tokens, prices_for(credentials.account_id, model))
                row = LlmUsage(workspace_id=caller.workspace_id, user_id=caller.user_id,
                               account_id=credentials.account_id, provider_slug=credentials.provider_slug,
                               model=model[:255], caller_type=caller.caller_type, caller_id=caller.caller_id,
                               node_id=caller.node_id, input_tokens=input_tokens, output_tokens=output_tokens,
                               total_tokens=total, cost=cost, latency_ms=latency_ms, status=status,
                               error=(error or None) and error[:2000], attempts=attempts, stream=stream)
                db.session.add(row)
                db.session.commit()
                uuid = row.uuid
        except Exception:  # noqa: BLE001 - the call's own outcome matters more than its bookkeeping
            log.exception("could not record the usage of a %s call (model %s)", caller.caller_type, model)
        return {"prompt_tokens": input_tokens, "completion_tokens": output_tokens, "total_tokens": total,
                "cost": None if cost is None else str(cost), "usage_uuid": uuid}


# -- the client -----------------------------------------------------------------------------------


def openai_client(credentials: Credentials, timeout: float, *, guard: bool | None = None) -> Any:
    """The ``openai`` client for the credentials (SSRF-guarded and pinned when ``guard``)."""
    import openai

    config = current_app.config
    guard = bool(config.get("LLM_SSRF_GUARD")) if guard is None else guard
    http_client = None
    if guard:
        target = check_url(credentials.base_url, config.get("LLM_ALLOWLIST") or ())
        http_client = httpx.Client(transport=pinned_transport(target), timeout=timeout)
    # An OpenAI-compatible server may need no key; the client insists on a non-empty one.
    return openai.OpenAI(api_key=credentials.api_key or "unused", base_url=credentials.base_url,
                         organization=credentials.organization, default_headers=credentials.extra_headers or None,
                         timeout=timeout, max_retries=0, http_client=http_client)


class LlmClient:
    """One caller's model calls with one set of credentials. ``chat.completions.create`` has the
    ``openai`` client's signature; streams come back wrapped (usage recorded when they end or
    are closed). ``last_usage``: the usage of the latest finished call (with ``cost``)."""

    def __init__(self, credentials: Credentials, caller: Caller, *, timeout: float, max_retries: int,
                 backoff: float, max_wait: float, recorder: UsageRecorder, default_model: str,
                 translate: Callable[[Any], Exception] | None = None) -> None:
        self.credentials = credentials
        self.caller = caller
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff = backoff
        self.max_wait = max_wait
        self.recorder = recorder
        self.default_model = default_model
        self.translate = translate or (lambda failure: failure)
        self.last_usage: dict[str, Any] | None = None
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))
        try:
            self._openai = openai_client(credentials, timeout)
        except BlockedTarget as exc:
            raise self.translate(provider_failure(exc, credentials, timeout)) from None

    @property
    def base_url(self) -> str:
        return self.credentials.base_url

    def close(self) -> None:
        self._openai.close()

    def __enter__(self) -> LlmClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _attempt(self, request: dict[str, Any]) -> tuple[Any, int]:
        """The call, retried on 429/5xx and connection failures (not on timeouts: a hanging
        provider is bounded by one timeout); returns (response, attempts)."""
        import openai

        attempt = 1
        while True:
            try:
                return self._openai.chat.completions.create(**request), attempt
            except openai.APITimeoutError:
                raise
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                status = getattr(exc, "status_code", None)
                retryable = status is None or status == 429 or status >= 500
                if not retryable or attempt > self.max_retries:
                    exc.athena_attempts = attempt  # type: ignore[attr-defined]
                    raise
                wait = self.backoff * 2 ** (attempt - 1)
                if status is not None:
                    told = retry_after_seconds(exc.response.headers.get("retry-after"))
                    wait = told if told is not None else wait
                if wait > self.max_wait:
                    exc.athena_attempts = attempt  # type: ignore[attr-defined]
                    raise
                time.sleep(wait)
                attempt += 1

    def create(self, **request: Any) -> Any:
        import openai

        request.setdefault("model", self.default_model)
        stream = bool(request.get("stream"))
        if stream:
            request.setdefault("stream_options", {"include_usage": True})
        started = time.monotonic()
        try:
            response, attempts = self._attempt(request)
        except (openai.OpenAIError, UnicodeError, httpx.InvalidURL) as exc:
            failure = provider_failure(exc, self.credentials, self.timeout)
            self.last_usage = self.recorder.record(self.caller, self.credentials, request["model"], None,
                                                   started=started, status=failure.kind, error=failure.message,
                                                   attempts=getattr(exc, "athena_attempts", 1), stream=stream)
            raise self.translate(failure) from None
        if stream:
            return RecordedStream(self, response, request["model"], started, attempts)
        self.last_usage = self.recorder.record(self.caller, self.credentials, request["model"], response.usage,
                                               started=started, status="success", attempts=attempts)
        return response


class RecordedStream:
    """A model stream that records its usage row once: when it ends, fails or is closed early
    (``cancelled``). Iterate it like the ``openai`` stream it wraps."""

    def __init__(self, client: LlmClient, stream: Any, model: str, started: float, attempts: int) -> None:
        self.client = client
        self.stream = stream
        self.model = model
        self.started = started
        self.attempts = attempts
        self.usage: Any = None
        self._recorded = False
        self._lock = threading.Lock()

    def _record(self, status: str, error: str | None = None) -> None:
        with self._lock:
            if self._recorded:
                return
            self._recorded = True
        self.client.last_usage = self.client.recorder.record(
            self.client.caller, self.client.credentials, self.model, self.usage, started=self.started,
            status=status, error=error, attempts=self.attempts, stream=True)

    def __iter__(self) -> Iterator[Any]:
        import openai

        try:
            for chunk in self.stream:
                if getattr(chunk, "usage", None) is not None:
                    self.usage = chunk.usage
                yield chunk
        except openai.OpenAIError as exc:
            failure = provider_failure(exc, self.client.credentials, self.client.timeout)
            self._record(failure.kind, failure.message)
            raise self.client.translate(failure) from None
        self._record("success")

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self._record("cancelled", "the caller stopped reading the stream")

    def __enter__(self) -> RecordedStream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def client_for(caller: Caller, *, account_uuid: str | None = None, model: str | None = None,
               timeout: float | None = None, max_retries: int | None = None,
               translate: Callable[[Any], Exception] | None = None) -> LlmClient:
    """An :class:`LlmClient` for ``caller``'s workspace (credentials resolved as the module says)."""
    config = current_app.config
    try:
        credentials = resolve_credentials(caller.workspace_id, account_uuid)
    except (NotConfigured, NotFound) as exc:
        raise (translate or (lambda failure: failure))(exc) from None
    return LlmClient(credentials, caller,
                     timeout=float(timeout or config.get("LLM_TIMEOUT") or 120.0),
                     max_retries=config.get("LLM_MAX_RETRIES", 2) if max_retries is None else max_retries,
                     backoff=float(config.get("LLM_RETRY_BACKOFF", 0.5)),
                     max_wait=float(config.get("LLM_RETRY_MAX_WAIT", 10.0)),
                     recorder=UsageRecorder(current_app._get_current_object()),
                     default_model=model or config.get("LLM_DEFAULT_MODEL") or "gpt-4.1-mini",
                     translate=translate)


def list_models(credentials: Credentials, timeout: float | None = None) -> list[dict[str, Any]]:
    """The provider's models listing (``GET {base_url}/models``): ``[{"id", "owned_by"}]``.
    Raises ProviderFailure (ProviderRefused for a refused key)."""
    import openai

    timeout = float(timeout or current_app.config.get("LLM_VERIFY_TIMEOUT") or 15.0)
    try:
        with openai_client(credentials, timeout) as client:
            return [{"id": model.id, "owned_by": getattr(model, "owned_by", None)} for model in client.models.list()]
    except (openai.OpenAIError, BlockedTarget, UnicodeError, httpx.InvalidURL) as exc:
        failure = provider_failure(exc, credentials, timeout)
        if isinstance(exc, openai.NotFoundError):
            message = (f"The base URL {credentials.base_url} has no models listing (HTTP 404): is it the API base "
                       "(usually ending in /v1)?")
            failure = ProviderRefused(message, errors={"credentials.base_url": [message]})
        raise failure from None


# -- the run layer's entry point ----------------------------------------------------------------


class NodeLlm:
    """``ctx.services["llm"]``: what the ``llm`` node calls models through. Looks up the
    execution's workspace and user once (lazily), and records each call as ``execution_node``."""

    def __init__(self, app: Flask, execution_id: int, workspace_id: int | None, user_id: int | None) -> None:
        self.app = app
        self.execution_id = execution_id
        self.workspace_id = workspace_id
        self.user_id = user_id
        self.execution_uuid: str | None = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self.execution_uuid is not None:
                return
            row = db.session.execute(select(WorkflowExecution.uuid, WorkflowExecution.workspace_id,
                                            WorkflowExecution.user_id)
                                     .where(WorkflowExecution.id == self.execution_id)).first()
            if row is not None:
                self.execution_uuid = row[0]
                self.workspace_id = self.workspace_id if self.workspace_id is not None else row[1]
                self.user_id = self.user_id if self.user_id is not None else row[2]
            else:
                self.execution_uuid = str(self.execution_id)

    def client(self, *, node_id: str, account_uuid: str | None = None, model: str | None = None,
               timeout: float | None = None) -> LlmClient:
        """A client for one node run; raises NodeError (no account/key, unknown account, blocked URL)."""
        with self.app.app_context():
            self._load()
            caller = Caller(self.workspace_id, self.user_id, "execution_node", self.execution_uuid, node_id)
            return client_for(caller, account_uuid=account_uuid, model=model, timeout=timeout,
                              max_retries=current_app.config.get("LLM_NODE_MAX_RETRIES", 0), translate=node_error)


def llm_services(execution_id: int, *, workspace_id: int | None = None, user_id: int | None = None) -> dict[str, Any]:
    """The entries the run layer merges into a run's ``ctx.services``: ``{"llm": NodeLlm}``.
    Holds no secret (credentials are resolved when a node calls); safe to build before a run."""
    return {"llm": NodeLlm(current_app._get_current_object(), execution_id, workspace_id, user_id)}
