"""Failed credential checks are rate limited per account and per client address (issue 13, item 3).

Real Redis counters, the real endpoints (sign-in, HTTP Basic on GET /user). Every test sends from
its own random client address (REMOTE_ADDR) with its own emails and deletes its counters at the
end, so nothing leaks into other tests (nor into the many that sign in from 127.0.0.1). The limits
are set explicitly on the shared app config for each test (the first test uses config.py's
defaults) and restored afterwards. Argon2 verifications are counted by a spy subclass of argon2's
PasswordHasher (it verifies for real) to show that a 429 is answered before any argon2 work."""
from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from argon2 import PasswordHasher

import athena.auth
import config
from athena.services.credential_limits import account_key, address_key, client_bucket
from tests.api.helpers import assert_json_error
from tests.support.redis_down import redis_unreachable
from tests.factories import PASSWORD, make_user, token_for
from tests.support.servers import wait_for

SIGN_IN = "/api/v1/auth/sign-in"
USER = "/api/v1/user"
DEFAULTS = {"account": config.Config.AUTH_FAILURE_LIMIT_PER_ACCOUNT,
            "address": config.Config.AUTH_FAILURE_LIMIT_PER_ADDRESS,
            "window": config.Config.AUTH_FAILURE_WINDOW_SECONDS}
SETTINGS = {"account": "AUTH_FAILURE_LIMIT_PER_ACCOUNT", "address": "AUTH_FAILURE_LIMIT_PER_ADDRESS",
            "window": "AUTH_FAILURE_WINDOW_SECONDS"}


@contextmanager
def limits(app, *, account: int, address: int, window: float) -> Iterator[None]:
    saved = {name: app.config[key] for name, key in SETTINGS.items()}
    app.config.update({SETTINGS["account"]: account, SETTINGS["address"]: address, SETTINGS["window"]: window})
    try:
        yield
    finally:
        app.config.update({SETTINGS[name]: value for name, value in saved.items()})


class CountingHasher(PasswordHasher):
    """argon2's own hasher, counting its verifications."""

    def __init__(self) -> None:
        super().__init__()
        self.verifications = 0

    def verify(self, hash, password):  # noqa: A002 - argon2's signature
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def argon2_spy(monkeypatch) -> CountingHasher:
    spy = CountingHasher()
    monkeypatch.setattr(athena.auth, "_hasher", spy)
    return spy


class Scene:
    """A test client with its own address, and emails whose counters are deleted afterwards."""

    def __init__(self, app, address: str) -> None:
        self.app = app
        self.address = address
        self.emails: list[str] = []
        self.addresses: list[str] = [address]
        self.client = self.client_from(address)

    def client_from(self, address: str):
        client = self.app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        self.addresses.append(address)
        return client

    def email(self) -> str:
        email = f"cred-{secrets.token_hex(8)}@example.com"
        self.emails.append(email)
        return email

    def keys(self) -> list[str]:
        return [address_key(a) for a in self.addresses] + [account_key(e) for e in self.emails]


def _random_ipv4() -> str:
    return "10." + ".".join(str(secrets.randbelow(256)) for _ in range(3))


@pytest.fixture
def scene(app, redis_conn) -> Iterator[Scene]:
    scene = Scene(app, _random_ipv4())
    yield scene
    redis_conn.delete(*scene.keys())


def sign_in(client, email: str, password: str):
    return client.post(SIGN_IN, json={"email": email, "password": password})


def basic(email: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{secret}".encode()).decode()}


def assert_429(response, window: float) -> int:
    body = assert_json_error(response, 429)
    assert "Too many failed sign-in attempts" in body["message"], body
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), response.headers
    assert 1 <= int(retry_after) <= window, retry_after
    return int(retry_after)


def test_thirty_wrong_passwords_get_429_with_retry_after(app, scene, argon2_spy):
    """The issue's attack: 30 wrong passwords for one account, with config.py's default limits."""
    assert DEFAULTS == {"account": 10, "address": 50, "window": 300.0}
    email = scene.email()
    make_user(email)
    with limits(app, **DEFAULTS):
        statuses, retry_afters = [], []
        for _ in range(30):
            response = sign_in(scene.client, email, "not the password")
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry_afters.append(assert_429(response, DEFAULTS["window"]))
            else:
                assert_json_error(response, 401)
        assert statuses == [401] * 10 + [429] * 20, statuses
        print(f"30 wrong passwords: {statuses.count(401)} x 401, {statuses.count(429)} x 429, "
              f"Retry-After {retry_afters[0]}..{retry_afters[-1]} s")
        # Only the first 10 reached argon2: a 429 is answered before any verification.
        assert argon2_spy.verifications == 10

        # The right password is refused too while the window lasts (from anywhere: the account is
        # locked), and is not even verified.
        assert_429(sign_in(scene.client, email, PASSWORD), DEFAULTS["window"])
        assert_429(sign_in(scene.client_from(_random_ipv4()), email, PASSWORD), DEFAULTS["window"])
        assert argon2_spy.verifications == 10

        # Another account from the same address is not affected: the address has 31 attempts
        # counted (the refused ones too), below its limit of 50.
        other = scene.email()
        make_user(other)
        assert sign_in(scene.client, other, PASSWORD).status_code == 200


def test_the_lock_ends_with_the_window(app, scene):
    email = scene.email()
    make_user(email)
    with limits(app, account=2, address=50, window=3):  # a short window, for this test only
        for _ in range(2):
            assert_json_error(sign_in(scene.client, email, "wrong"), 401)
        assert_429(sign_in(scene.client, email, "wrong"), 3)
        assert_429(sign_in(scene.client, email, PASSWORD), 3)  # still locked: the right password is 429
        # Bounded wait (a safety net, not a timing assertion): the next window lets the user in.
        wait_for(lambda: sign_in(scene.client, email, PASSWORD).status_code == 200,
                 timeout=15, interval=0.2, message="the sign-in window to reset")


def test_many_accounts_from_one_address_get_429(app, scene, redis_conn, argon2_spy):
    victim = scene.email()
    make_user(victim)
    with limits(app, account=10, address=8, window=300):
        emails = [scene.email() for _ in range(12)]  # unknown emails count like known ones
        statuses = [sign_in(scene.client, email, "guess").status_code for email in emails]
        assert statuses == [401] * 8 + [429] * 4, statuses
        assert argon2_spy.verifications == 8
        # Refused by the address, the attempts never created account counters.
        assert all(redis_conn.exists(account_key(email)) for email in emails[:8])
        assert not any(redis_conn.exists(account_key(email)) for email in emails[8:])
        # The address is refused, even with the right password of a real account...
        assert_429(sign_in(scene.client, victim, PASSWORD), 300)
        assert_429(scene.client.get(USER, headers=basic(victim, PASSWORD)), 300)
        # ...while that account itself is not locked: it signs in from elsewhere.
        assert sign_in(scene.client_from(_random_ipv4()), victim, PASSWORD).status_code == 200


def test_ipv6_clients_are_counted_by_their_64(app, scene):
    prefix = "2001:db8:%x:%x" % (secrets.randbelow(1 << 16), secrets.randbelow(1 << 16))
    assert client_bucket(f"{prefix}::1") == client_bucket(f"{prefix}:ffff:ffff:ffff:ffff") == f"{prefix}::/64"
    assert client_bucket("::ffff:10.1.2.3") == "10.1.2.3"
    with limits(app, account=10, address=3, window=300):
        for host in range(1, 4):
            assert sign_in(scene.client_from(f"{prefix}::{host}"), scene.email(), "guess").status_code == 401
        assert_429(sign_in(scene.client_from(f"{prefix}::99"), scene.email(), "guess"), 300)
        neighbour = "2001:db8:%x:%x::1" % (secrets.randbelow(1 << 16), secrets.randbelow(1 << 16))
        assert sign_in(scene.client_from(neighbour), scene.email(), "guess").status_code == 401


def test_basic_on_get_user_counts_too(app, scene, argon2_spy):
    email = scene.email()
    user = make_user(email)
    session, app_token = token_for(user), token_for(user, kind="app")
    with limits(app, **DEFAULTS):
        for _ in range(10):
            assert_json_error(scene.client.get(USER, headers=basic(email, "wrong")), 401)
        assert_429(scene.client.get(USER, headers=basic(email, "wrong")), 300)
        assert argon2_spy.verifications == 10
        # One budget per account, whichever way the password is presented (email normalised).
        assert_429(scene.client.get(USER, headers=basic(f" {email.upper()}", PASSWORD)), 300)
        assert_429(sign_in(scene.client, email, PASSWORD), 300)
        assert argon2_spy.verifications == 10
        # Tokens are not password checks: an app token in Basic and a Bearer token still work.
        for headers in (basic(email, app_token), {"Authorization": f"Bearer {session}"}):
            response = scene.client.get(USER, headers=headers)
            assert response.status_code == 200 and response.json["data"]["email"] == email, response.json


def test_successes_do_not_count_nor_reset_the_counter(app, scene):
    email = scene.email()
    make_user(email)
    with limits(app, account=3, address=50, window=300):
        for _ in range(2):
            assert sign_in(scene.client, email, "wrong").status_code == 401
        for _ in range(5):  # more successes than the limit: none of them counts
            assert sign_in(scene.client, email, PASSWORD).status_code == 200
        assert scene.client.get(USER, headers=basic(email, PASSWORD)).status_code == 200
        # ...nor did they reset the two failures: the third failure reaches the limit.
        assert sign_in(scene.client, email, "wrong").status_code == 401
        assert_429(sign_in(scene.client, email, PASSWORD), 300)


def test_the_email_is_normalised_and_not_stored(app, scene, redis_conn):
    email = scene.email()
    make_user(email)
    with limits(app, account=3, address=50, window=300):
        for variant in (email.upper(), f"  {email}\t", email.capitalize()):
            assert sign_in(scene.client, variant, "wrong").status_code == 401
        assert_429(sign_in(scene.client, email, PASSWORD), 300)
    key = account_key(email)
    assert redis_conn.get(key) == b"4"  # 3 failures and the refused attempt
    assert email not in key and email.split("@")[0] not in key
    assert scene.address not in address_key(scene.address)
    assert 0 < redis_conn.pttl(key) <= 300_000


def test_zero_disables_the_limits(app, scene, redis_conn):
    email = scene.email()
    make_user(email)
    with limits(app, account=0, address=0, window=300):
        for _ in range(12):
            assert sign_in(scene.client, email, "wrong").status_code == 401
        assert sign_in(scene.client, email, PASSWORD).status_code == 200
    assert not redis_conn.exists(*scene.keys())


def test_fails_open_when_redis_is_unreachable(app, scene, caplog, monkeypatch):
    # The app fixture's migrations run alembic's fileConfig, which disables the loggers that
    # existed then (this one among them): enable it for the test to see the warning.
    monkeypatch.setattr(logging.getLogger("athena.services.credential_limits"), "disabled", False)
    email = scene.email()
    make_user(email)
    with limits(app, account=1, address=1, window=300), redis_unreachable(app), \
            caplog.at_level(logging.WARNING, logger="athena.services.credential_limits"):
        for _ in range(3):
            assert_json_error(sign_in(scene.client, email, "wrong"), 401)
        assert sign_in(scene.client, email, PASSWORD).status_code == 200
        assert scene.client.get(USER, headers=basic(email, PASSWORD)).status_code == 200
    assert any("Redis unavailable" in record.getMessage() for record in caplog.records)


def test_the_429_is_documented(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path, method in ((SIGN_IN, "post"), (USER, "get")):
        responses = paths[path][method]["responses"]
        assert "429" in responses and "Retry-After" in responses["429"]["headers"], (path, responses)
