"""Fixed-window counters in Redis (``hit``/``release``), and the per-workflow webhook rate limit.

The counters are also used by :mod:`athena.services.credential_limits` (failed sign-ins).

One key per workflow (``athena:ratelimit:webhook:<workflow uuid>``). A small Lua script does
``INCR`` and, on the first hit of a window, ``PEXPIRE`` atomically, and returns the count and the
window's remaining milliseconds. The window starts at the first request after the previous window
expired; the count of a window is shared by every web node (they all talk to the same Redis).

``WEBHOOK_RATE_LIMIT`` requests per ``WEBHOOK_RATE_WINDOW_SECONDS``; a limit of 0 disables it.
Over the limit the webhook answers 429 with ``Retry-After`` (whole seconds until the window
resets, at least 1). If Redis cannot be reached the request is let through (fail open): the
execution it creates is then queued by the sweeper once Redis is back, like any other."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from flask import current_app
from redis import RedisError

from athena.errors import RateLimited
from athena.redis_client import get_redis

PREFIX = "athena:ratelimit:webhook"
log = logging.getLogger(__name__)

# KEYS[1] = counter; ARGV[1] = window in ms. Returns {count, remaining ms of the window}.
_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

# KEYS[1] = counter. Takes back one hit, without ever recreating an expired counter (it would
# then have no TTL).
_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
end
return 0
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int
    limit: int
    retry_after: int  # seconds until the window resets (0 when allowed)


def rate_key(workflow_uuid: str) -> str:
    return f"{PREFIX}:{workflow_uuid}"


def hit(workflow_uuid: str, limit: int, window_seconds: float) -> Decision:
    """Count one request for ``workflow_uuid``; ``allowed`` is False past ``limit`` in the window."""
    return hit_key(rate_key(workflow_uuid), limit, window_seconds)


def hit_key(key: str, limit: int, window_seconds: float) -> Decision:
    """Count one hit on the counter ``key``; ``allowed`` is False past ``limit`` in its window.
    Hits past the limit are counted too, but never lengthen the window (it is set by the first)."""
    window_ms = max(1, int(window_seconds * 1000))
    count, remaining_ms = get_redis().eval(_HIT, 1, key, window_ms)
    count, remaining_ms = int(count), int(remaining_ms)
    if count <= limit:
        return Decision(True, count, limit, 0)
    return Decision(False, count, limit, max(1, math.ceil(remaining_ms / 1000)))


def release(key: str) -> None:
    """Take back one hit of ``key`` (a counted attempt that turned out not to count)."""
    get_redis().eval(_RELEASE, 1, key)


def enforce_webhook_limit(workflow_uuid: str) -> None:
    """429 (``Retry-After``, JSON ``{"message"}``) when the workflow's webhook is over its limit.

    Call after authentication/authorization and before anything is created."""
    limit = int(current_app.config.get("WEBHOOK_RATE_LIMIT") or 0)
    window = float(current_app.config.get("WEBHOOK_RATE_WINDOW_SECONDS") or 0)
    if limit <= 0 or window <= 0:
        return
    try:
        decision = hit(workflow_uuid, limit, window)
    except RedisError:
        log.warning("webhook rate limit: Redis unavailable, letting the request through", exc_info=True)
        return
    if not decision.allowed:
        raise RateLimited(f"Too many webhook calls for this workflow: at most {limit} per "
                          f"{window:g} seconds. Retry after {decision.retry_after} seconds.",
                          retry_after=decision.retry_after)
