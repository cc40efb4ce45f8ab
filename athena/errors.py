"""Domain errors: what services raise when a request cannot be carried out.

Services (athena/services) know nothing of HTTP: they raise these, and the API maps each to its
answer in one place (``AthenaApi.handle_domain_error``, athena/api/base.py): the class's
``status``, the JSON body ``{"message", "errors"?}`` (``errors`` by field, like a validation
error's) and the error's ``headers`` (``Retry-After`` for :class:`RateLimited`). The worker runs
the same services and sees them as ordinary exceptions."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """``message`` for people; ``errors``: problems by field (``{"field": ["..."]}``)."""

    status = 400

    def __init__(self, message: str, *, errors: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})


class Forbidden(DomainError):
    """The caller may see the object but not do this (a viewer's write)."""

    status = 403


class NotFound(DomainError):
    """No such object, or one the caller may not see (another workspace's: also a 404)."""

    status = 404


class Conflict(DomainError):
    """Not in the object's current state (stop a finished execution, decide an approval twice)."""

    status = 409


class Invalid(DomainError):
    """The input is well-formed but cannot be used (an invalid graph, a missing filter)."""

    status = 422


class RateLimited(DomainError):
    """Over a rate limit; ``retry_after``: whole seconds until it may be tried again."""

    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class NotConfigured(DomainError):
    """Something the server needs is not set up (no language model: no account, no key)."""

    status = 503


class ProviderFailure(DomainError):
    """A language-model provider call that failed (athena/services/llm_client.py). ``kind`` is the
    usage row's status (``error``, ``refused``, ``rate_limited``, ``timeout``, ``unreachable``);
    ``retryable``: worth trying again later (429, 5xx, unreachable)."""

    status = 502
    kind = "error"

    def __init__(self, message: str, *, retryable: bool = False, errors: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, errors=errors, headers=headers)
        self.retryable = retryable


class ProviderRefused(ProviderFailure):
    """The provider refused the credentials (its 401/403) or the base URL is not one: a 422 on
    the account, with the provider's reason."""

    status = 422
    kind = "refused"


class ProviderRateLimited(ProviderFailure):
    """The provider's 429, passed on with its ``Retry-After`` (when it sent one)."""

    status = 429
    kind = "rate_limited"


class ProviderTimeout(ProviderFailure):
    """The provider did not answer within the timeout."""

    status = 504
    kind = "timeout"


class ProviderUnreachable(ProviderFailure):
    """The provider's base URL cannot be reached (refused connection, DNS, blocked by the SSRF guard)."""

    status = 503
    kind = "unreachable"
