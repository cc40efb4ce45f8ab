"""GET /api/v1/user three ways (Bearer token, app token in X-Multiplai-Authorization, HTTP Basic)
and which header wins when a request carries two (docs/api.md, "Authentication")."""
from __future__ import annotations

import base64

import pytest

from tests.factories import PASSWORD, make_user, make_workspace, token_for

USER = "/api/v1/user"


def _basic(email: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{secret}".encode()).decode()}


@pytest.fixture
def alice():
    user = make_user("alice@example.com")
    return {"user": user, "session": token_for(user), "app": token_for(user, kind="app")}


def _who(client, headers) -> tuple[int, str | None]:
    response = client.get(USER, headers=headers)
    assert response.is_json, response.data
    return response.status_code, (response.json.get("data") or {}).get("email")


def test_the_three_documented_ways(client, alice):
    assert _who(client, {"Authorization": f"Bearer {alice['session']}"}) == (200, "alice@example.com")
    # "Get Authenticated User using Multiplai App Access Token", with the documented empty Authorization
    assert _who(client, {"X-Multiplai-Authorization": alice["app"]}) == (200, "alice@example.com")
    # "Get Authenticated User using Basic Token": email:password or email:app-token
    assert _who(client, _basic("alice@example.com", PASSWORD)) == (200, "alice@example.com")
    assert _who(client, _basic("ALICE@example.com", alice["app"])) == (200, "alice@example.com")


def test_basic_credentials_that_do_not_match_are_401(client, alice):
    other = make_user("bob@example.com")
    for headers in (
        _basic("alice@example.com", "wrong password"),
        _basic("nobody@example.com", PASSWORD),
        _basic("alice@example.com", alice["session"]),  # a session token is not an app token
        _basic("bob@example.com", alice["app"]),  # alice's app token is not bob's
        _basic("alice@example.com", ""),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Basic " + base64.b64encode(b"no colon").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
    ):
        assert _who(client, headers) == (401, None), headers
    assert other.email == "bob@example.com"


def test_basic_is_accepted_by_get_user_only(client, alice):
    workspace = make_workspace(alice["user"])
    basic = _basic("alice@example.com", PASSWORD)
    assert client.get("/api/v1/workspaces", headers=basic).status_code == 401
    assert client.get(f"/api/v1/workspaces/{workspace.uuid}", headers=basic).status_code == 401
    assert client.post("/api/v1/auth/logout", headers=basic).status_code == 401


def test_header_precedence(client, alice):
    session, app_token = alice["session"], alice["app"]
    cases = [
        # an empty header counts as absent, in either place (the documented examples send one)
        ({"X-Multiplai-Authorization": "", "Authorization": f"Bearer {session}"}, 200),
        ({"Authorization": "", "X-Multiplai-Authorization": app_token}, 200),
        ({"Authorization": "Bearer ", "X-Multiplai-Authorization": app_token}, 200),
        ({"Authorization": "", "X-Multiplai-Authorization": ""}, 401),
        # a valid token in either header authenticates; both valid (same user) is fine
        ({"Authorization": f"Bearer {session}", "X-Multiplai-Authorization": f"Bearer {app_token}"}, 200),
        # a present but invalid token in one header is a 401 even when the other is valid
        ({"Authorization": "Bearer not-a-token", "X-Multiplai-Authorization": app_token}, 401),
        ({"Authorization": f"Bearer {session}", "X-Multiplai-Authorization": "not-a-token"}, 401),
        ({"Authorization": "Basic bm9wZQ==", "X-Multiplai-Authorization": app_token}, 401),
    ]
    for headers, status in cases:
        assert _who(client, headers)[0] == status, headers


def test_two_valid_tokens_of_different_users_are_401(client, alice):
    bob = make_user("bob@example.com")
    headers = {"Authorization": f"Bearer {alice['session']}", "X-Multiplai-Authorization": token_for(bob, "app")}
    assert _who(client, headers) == (401, None)
