"""One writer at a time on a SQLite file, in arrival order, across threads and processes.

SQLite allows one write transaction at a time. A connection that finds the write lock taken
retries with growing sleeps (1, 2, 5, 10 ... 100 ms: ``busy_timeout``), so under concurrent writes
much of the waiting is sleeping after the lock was free again: at 64 concurrent webhook calls,
seconds of p99 latency. Here a connection takes the process's writer lock (a ``threading.Lock``:
threads wait without polling) and then an exclusive ``flock`` on a file next to the database
(processes: polled every 0.1 to 1 ms, by one thread per process) before the first write of its
transaction, and drops both right after the commit or rollback. Readers never take it (WAL lets
them read during a write).

Neither wait hangs: after ``WAIT_SECONDS`` (the ``busy_timeout``) the write goes ahead without
the lock and SQLite's own waiting applies, as it does for writers outside Athena (a ``sqlite3``
shell, a migration). A thread that already holds the lock through another connection does not
wait for itself.

Used through ``sqlite3.connect(..., factory=...)`` from :func:`connect_args` (POSIX only)."""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

WAIT_SECONDS = 10.0
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


def _writes(statement: str) -> bool:
    return statement.lstrip()[:7].upper().startswith(_WRITES)


class WriterQueuedCursor(sqlite3.Cursor):
    def execute(self, statement: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if _writes(statement):
            self.connection.take_writer_lock()
        return super().execute(statement, parameters)

    def executemany(self, statement: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        if _writes(statement):
            self.connection.take_writer_lock()
        return super().executemany(statement, seq_of_parameters)


class WriterLock:
    """The writer lock of one database file in this process (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.threads = threading.Lock()
        self.owner: int | None = None  # the thread holding it
        self.fd: int | None = None  # one open file per process: flock is per open file

    def acquire(self) -> bool:
        """True when taken (release it later); False when the write goes ahead without it."""
        if self.owner == threading.get_ident():
            return False  # held by this thread through another connection: never wait for ourselves
        if not self.threads.acquire(timeout=WAIT_SECONDS):
            return False
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            deadline = time.monotonic() + WAIT_SECONDS
            pause = 0.0001
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self.threads.release()
                        return False
                    time.sleep(pause)
                    pause = min(pause * 2, 0.001)
        except BaseException:
            self.threads.release()
            raise
        self.owner = threading.get_ident()
        return True

    def release(self) -> None:
        self.owner = None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.threads.release()


_locks: dict[str, WriterLock] = {}
_locks_guard = threading.Lock()


def writer_lock(path: str) -> WriterLock:
    lock = _locks.get(path)
    if lock is None or lock.pid != os.getpid():  # a forked child gets its own (its own open file)
        with _locks_guard:
            lock = _locks.get(path)
            if lock is None or lock.pid != os.getpid():
                lock = _locks[path] = WriterLock(path)
    return lock


def _after_fork_in_child() -> None:
    global _locks_guard
    _locks_guard = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class WriterQueuedConnection(sqlite3.Connection):
    lock_path: str = ""  # set per database by :func:`connect_args` (a subclass per path)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: WriterLock | None = None

    def cursor(self, factory: Any = WriterQueuedCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, statement: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().execute(statement, parameters)

    def take_writer_lock(self) -> None:
        if self._held is None:
            lock = writer_lock(self.lock_path)
            if lock.acquire():
                self._held = lock

    def _drop_writer_lock(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def _ending(self, end: Callable[[], None]) -> None:
        """A transaction (or the connection) ends: the writer lock goes with it, whatever happens."""
        try:
            end()
        finally:
            self._drop_writer_lock()

    def commit(self) -> None:
        self._ending(super().commit)

    def rollback(self) -> None:
        self._ending(super().rollback)

    def close(self) -> None:
        self._ending(super().close)


_factories: dict[str, type[WriterQueuedConnection]] = {}


def connect_args(database_path: str | None) -> dict[str, Any]:
    """``connect_args`` for a SQLite file (nothing for ``:memory:`` or off POSIX)."""
    if fcntl is None or not database_path or database_path == ":memory:" or database_path.startswith("file:"):
        return {}
    lock_path = os.path.abspath(database_path) + "-writer.lock"
    factory = _factories.get(lock_path)
    if factory is None:
        factory = _factories[lock_path] = type("WriterQueuedConnection", (WriterQueuedConnection,),
                                               {"lock_path": lock_path})
    return {"factory": factory}
