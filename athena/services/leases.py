"""Execution leases: a running execution is owned by exactly one worker, proven by a Redis key
with a short TTL that a heartbeat thread keeps alive. A worker that dies stops renewing it;
the sweeper sees the lease gone and hands the execution to another worker, which continues
from the last checkpoint."""
from __future__ import annotations

import threading
import uuid as uuid_lib

from redis import Redis

from athena.eventlog import PREFIX

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(execution_uuid: str) -> str:
    return f"{PREFIX}:exec:{execution_uuid}:lease"


def lease_alive(redis: Redis, execution_uuid: str) -> bool:
    return bool(redis.exists(lease_key(execution_uuid)))


class Lease:
    """``acquire()`` once; a daemon thread renews it every ttl/3 until ``release()``."""

    def __init__(self, redis: Redis, execution_uuid: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = lease_key(execution_uuid)
        self.ttl_ms = max(1000, int(ttl_seconds * 1000))
        self.token = uuid_lib.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.key}", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                # Only while still ours (a lease lost to a long GC pause is not taken back).
                if self.redis.get(self.key) != self.token.encode():
                    return
                self.redis.pexpire(self.key, self.ttl_ms)
            except Exception:  # noqa: BLE001 - Redis hiccup: the next beat retries
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.redis.eval(_RELEASE, 1, self.key, self.token)
        except Exception:  # noqa: BLE001 - the TTL frees it anyway
            pass
