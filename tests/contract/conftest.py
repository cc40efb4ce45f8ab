"""Fixtures of the contract tests (the app, live_server and fake OpenAI fixtures come from
tests/conftest.py)."""
from __future__ import annotations

from typing import Callable

import pytest

from tests.contract import curl
from tests.contract.scene import Scene, seed_scene


@pytest.fixture
def scene() -> Scene:
    """The seeded rows; the owner's multiplai_id is NOT the documented ``user-123``."""
    return seed_scene("user-owner")


@pytest.fixture
def scene_123() -> Scene:
    """The seeded rows with the owner's multiplai_id the documented ``user-123``."""
    return seed_scene("user-123")


@pytest.fixture(params=["http.client", "curl"])
def replayer(request, live_server, tmp_path) -> Callable[..., curl.Reply]:
    """Replays a documented command against the live server: with http.client, and again with
    the real curl binary when it is installed (skipped otherwise)."""
    if request.param == "curl" and not curl.curl_available():
        pytest.skip("no curl binary on this machine (the http.client replay still runs)")

    def replay(command: str, token: str, placeholders: dict[str, str] | None = None) -> curl.Reply:
        if request.param == "curl":
            return curl.run_curl(command, live_server.url, token, placeholders, tmp_path)
        return curl.replay(command, live_server.url, token, placeholders)

    return replay


@pytest.fixture
def replay(live_server) -> Callable[..., curl.Reply]:
    """Replays a command with http.client against the live server."""

    def run(command: str, token: str, placeholders: dict[str, str] | None = None) -> curl.Reply:
        return curl.replay(command, live_server.url, token, placeholders)

    return run
