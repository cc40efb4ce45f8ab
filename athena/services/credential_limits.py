"""Failed credential checks, limited per account and per client address.

Every password check (``POST /api/v1/auth/sign-in``, HTTP Basic on ``GET /api/v1/user``) is
counted, BEFORE the argon2 verification, on two fixed-window counters of
:mod:`athena.services.rate_limit` (Redis, shared by every web process):

- the **client address** (the caller passes ``request.remote_addr``; an IPv6 address by its /64,
  the block one host usually owns; an IPv4-mapped IPv6 address as IPv4):
  ``AUTH_FAILURE_LIMIT_PER_ADDRESS``;
- the **account**, the presented email lower-cased and stripped, known or not (an unknown email
  behaves exactly like a known one, so the limit reveals nothing): ``AUTH_FAILURE_LIMIT_PER_ACCOUNT``;

per ``AUTH_FAILURE_WINDOW_SECONDS``; a limit of 0 disables that counter. The address is counted
first and an attempt refused by it never touches an account counter, so one address cannot
create more than its limit of account counters per window, and every counter expires with its
window: nobody is locked out for longer than the window.

Past a limit the check raises :class:`athena.errors.RateLimited`, answered 429 (``Retry-After``:
whole seconds until that counter's window ends, at least 1), without verifying anything, the
right password included: a guesser learns nothing while locked out. A check that succeeds is
taken back (``Attempt.succeeded``), so only failures use up the budget, but a success does not
reset the counter either: a script signing in every minute must not hand an attacker a fresh
set of guesses each time.

Keys: ``athena:ratelimit:auth:account:<h>`` and ``athena:ratelimit:auth:address:<h>``, ``h`` an
HMAC-SHA256 (keyed with ``SECRET_KEY``) of the normalised value: Redis never holds emails or
addresses, nor a plain hash a dictionary would reverse.

Proxies: nothing in Athena trusts ``X-Forwarded-For`` (no ``ProxyFix``), so behind a reverse
proxy every client has the proxy's address and shares one address budget: raise or disable
``ATHENA_AUTH_FAILURE_LIMIT_ADDRESS`` there (the account limit still holds), or rate limit at the
proxy. If Redis cannot be reached the check goes ahead uncounted (fail open, a warning is
logged), like the webhook rate limit: a Redis outage must not lock every user out."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from dataclasses import dataclass

from flask import current_app
from redis import RedisError

from athena.errors import RateLimited
from athena.redis_client import RedisNotConfigured
from athena.services.rate_limit import hit_key, release

PREFIX = "athena:ratelimit:auth"
log = logging.getLogger(__name__)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def client_bucket(address: str | None) -> str:
    """The address a client is counted under: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return (address or "").strip() or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _digest(kind: str, value: str) -> str:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def account_key(email: str) -> str:
    return f"{PREFIX}:account:{_digest('account', normalise_email(email))}"


def address_key(address: str | None) -> str:
    return f"{PREFIX}:address:{_digest('address', client_bucket(address))}"


@dataclass(frozen=True)
class Attempt:
    """A counted credential check; ``succeeded()`` takes it back."""

    keys: tuple[str, ...] = ()

    def succeeded(self) -> None:
        for key in self.keys:
            try:
                release(key)
            except (RedisError, RedisNotConfigured):
                log.warning("credential rate limit: Redis unavailable, a success stays counted", exc_info=True)
                return


def begin_attempt(email: str, address: str | None) -> Attempt:
    """Count a credential check for ``email`` from the client ``address``; raises
    :class:`RateLimited` (429, ``Retry-After``) when the address or the account is over its limit.
    Call before the password is verified, and ``succeeded()`` on the result when it matched."""
    config = current_app.config
    window = float(config.get("AUTH_FAILURE_WINDOW_SECONDS") or 0)
    counters = [(key, limit) for key, limit in (
        (address_key(address), int(config.get("AUTH_FAILURE_LIMIT_PER_ADDRESS") or 0)),
        (account_key(email), int(config.get("AUTH_FAILURE_LIMIT_PER_ACCOUNT") or 0)),
    ) if limit > 0]
    if window <= 0:
        return Attempt()
    counted: list[str] = []
    for key, limit in counters:
        try:
            decision = hit_key(key, limit, window)
        except (RedisError, RedisNotConfigured):
            log.warning("credential rate limit: Redis unavailable, checking the credentials uncounted",
                        exc_info=True)
            return Attempt(tuple(counted))
        counted.append(key)
        if not decision.allowed:
            raise RateLimited(f"Too many failed sign-in attempts for this account or from this address. "
                              f"Retry after {decision.retry_after} seconds.", retry_after=decision.retry_after)
    return Attempt(tuple(counted))
