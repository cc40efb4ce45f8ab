"""The app's Redis made unreachable for a moment, with a real client (no mock)."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def redis_unreachable(app) -> Iterator[None]:
    """The app's Redis client swapped for one pointing at a closed port (a real client)."""
    state = app.extensions["athena_redis"]
    saved = state["redis"]
    state["redis"] = Redis(host="127.0.0.1", port=unused_port(), socket_connect_timeout=0.5)
    try:
        yield
    finally:
        state["redis"] = saved
