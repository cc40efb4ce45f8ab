"""Execution leases: a running execution is owned by exactly one worker, proven by a Redis key
with a short TTL that the process's lease keeper keeps alive. A worker that dies stops renewing
it; the sweeper sees the lease gone and hands the execution to another worker, which continues
from the last checkpoint.

One keeper thread per process renews every lease the process holds (a thread per execution
cost a thread start and a join on every run)."""
from __future__ import annotations

import threading
import uuid as uuid_lib

from redis import Redis

from athena.runs.eventlog import PREFIX

# Only while still ours: a lease lost (e.g. to a long pause) is not taken back.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(execution_uuid: str) -> str:
    return f"{PREFIX}:exec:{execution_uuid}:lease"


def lease_alive(redis: Redis, execution_uuid: str) -> bool:
    return bool(redis.exists(lease_key(execution_uuid)))


class _Keeper:
    """Renews the held leases every ttl/3 (of the shortest one) from one daemon thread."""

    IDLE_INTERVAL = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, Lease] = {}
        self._wake = threading.Event()
        self._interval = self.IDLE_INTERVAL
        self._thread: threading.Thread | None = None

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._held[id(lease)] = lease
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._loop, name="athena-lease-keeper", daemon=True)
                self._thread.start()
            shorter = lease.ttl_ms / 3000 < self._interval
        if shorter:  # the current wait could outlast this lease: re-plan now (rare: not per lease)
            self._wake.set()

    def remove(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(id(lease), None)

    def _loop(self) -> None:
        while True:
            woken = self._wake.wait(self._interval)
            self._wake.clear()
            with self._lock:
                leases = list(self._held.values())
                self._interval = min((lease.ttl_ms / 3000 for lease in leases), default=self.IDLE_INTERVAL)
            if not woken:  # every lease held now is at most one interval old
                for lease in leases:
                    lease.renew()


_keeper = _Keeper()


class Lease:
    """``acquire()`` once; the process's keeper renews it until ``release()``."""

    def __init__(self, redis: Redis, execution_uuid: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = lease_key(execution_uuid)
        self.ttl_ms = max(1000, int(ttl_seconds * 1000))
        self.token = uuid_lib.uuid4().hex
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._held = False

    def acquire(self) -> bool:
        return self.acquire_and_check()[0]

    def acquire_and_check(self, flag_key: str | None = None) -> tuple[bool, bool]:
        """Take the lease and, in the same round trip, read whether ``flag_key`` exists (e.g.
        the execution's stop key): ``(acquired, flag set)``."""
        batch = self.redis.pipeline(transaction=False)
        batch.set(self.key, self.token, nx=True, px=self.ttl_ms)
        if flag_key is not None:
            batch.exists(flag_key)
        answers = batch.execute()
        if not answers[0]:
            return False, False
        self._held = True
        _keeper.add(self)
        return True, bool(answers[1]) if flag_key is not None else False

    def renew(self) -> None:
        try:
            if self._held and not self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
                self._held = False  # lost: stop renewing (never taken back)
                _keeper.remove(self)
        except Exception:  # noqa: BLE001 - Redis hiccup: the next beat retries
            pass

    def release(self) -> None:
        self._held = False
        _keeper.remove(self)
        try:
            self._release(keys=[self.key], args=[self.token])
        except Exception:  # noqa: BLE001 - the TTL frees it anyway
            pass
