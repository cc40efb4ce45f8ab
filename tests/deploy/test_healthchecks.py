"""The healthchecks of docker-compose.yml, run for real as plain commands (there is no Docker engine
here): each service's `command` and its healthcheck `test` are taken from the compose file and run
as written, in the environment the container would have (the image's ENV, then the service's
`environment`), adapted only by environment variables: the test database and Redis instead of the
`postgres` and `redis` services, a free loopback port, a queue of its own, `python`/`gunicorn` of
this venv first on PATH. A healthcheck exits 0 while its process serves, non-zero otherwise."""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, Worker

from athena.dev.devserver import _gunicorn_extra_args
from tests.deploy.test_compose import SERVICES, config_variables, environment
from tests.support.servers import ROOT, free_port, send_json, serve_http, wait_for

VENV_BIN = str(Path(sys.executable).parent)
STARTUP_TIMEOUT = 60.0


def image_env() -> dict[str, str]:
    """The Dockerfile's ENV settings."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().upper().startswith("ENV "):
            found.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", line))
    return found


def _interpolate(value: str, host: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` / `${NAME:?error}` with the host environment ``host``."""
    def one(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if host.get(name):
            return host[name]
        if op == ":?":
            raise AssertionError(f"compose would refuse to start: {name} unset ({rest})")
        return rest if op == ":-" else ""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:[-?])?([^}]*)\}", one, value)


def container_env(service: str, host: dict[str, str], **adapt: str) -> dict[str, str]:
    """What ``service``'s container would see with ``host`` as the host's environment (compose
    interpolation), then the test's adaptations ``adapt``."""
    base = {k: v for k, v in os.environ.items()
            if k not in config_variables() and k not in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY")}
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    base.update(image_env())
    base.update({name: _interpolate(value, host) for name, value in environment(service).items()})
    base.update(adapt)
    return base


def healthcheck(service: str) -> list[str]:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return list(test[1:])


def run_check(service: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(healthcheck(service), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def start(service: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    command = SERVICES[service]["command"]
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    try:  # leftovers of the group (gunicorn workers, the RQ scheduler)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return process.returncode


def healthy_soon(service: str, env: dict[str, str], process: subprocess.Popen, log_path: Path) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{service} exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        return run_check(service, env).returncode == 0
    try:
        wait_for(ready, timeout=STARTUP_TIMEOUT, interval=0.3, message=f"{service} healthcheck to pass")
    except AssertionError:
        last = run_check(service, env)
        raise AssertionError(f"{last.stderr}\n{log_path.read_text()[-3000:]}") from None


@pytest.fixture
def host_env() -> dict[str, str]:
    """The operator's environment: the one variable compose requires (SECRET_KEY, production-grade)."""
    return {"SECRET_KEY": secrets.token_urlsafe(48)}


@pytest.fixture
def app_env(test_settings, host_env):
    def make(service: str, **adapt: str) -> dict[str, str]:
        return container_env(service, host_env, **{
            "DATABASE_URL": test_settings["database_url"], "REDIS_URL": test_settings["redis_url"],
            "ATHENA_INSTANCE_DIR": str(test_settings["tmp"] / "instance"), **adapt})
    return make


def test_container_env_is_production_with_the_operators_key(app_env, host_env) -> None:
    env = app_env("worker")
    assert env["ATHENA_ENV"] == "production" and env["SECRET_KEY"] == host_env["SECRET_KEY"]
    assert env["PORT"] == "5000" and env["ATHENA_LLM_MODEL"] == ""  # the image's; config.py's default


# -- web -------------------------------------------------------------------------------------
def test_web_healthcheck_passes_while_the_compose_web_command_serves(app_env, test_settings, tmp_path) -> None:
    port = free_port()
    gunicorn_args = " ".join([f"--bind=127.0.0.1:{port}", "--threads=4", *_gunicorn_extra_args()])
    env = app_env("web", PORT=str(port), ATHENA_QUEUE=test_settings["queue"], WEB_CONCURRENCY="1",
                  GUNICORN_CMD_ARGS=gunicorn_args)
    before = run_check("web", env)
    assert before.returncode != 0 and "unhealthy" in before.stderr, "healthy with nothing listening"

    log_path = tmp_path / "web.log"
    process = start("web", env, log_path)
    try:
        healthy_soon("web", env, process, log_path)
        assert run_check("web", env).stdout == ""  # --quiet: Docker keeps the output of failures only
    finally:
        code = stop(process)
    assert code == 0, f"gunicorn exited {code} on SIGTERM:\n{log_path.read_text()[-3000:]}"
    after = run_check("web", env)
    assert after.returncode != 0 and "Connection refused" in after.stderr, after.stderr


class _Broken(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.endswith("/openapi.json") and "500" in self.server.mode:
            send_json(self, 500, b'{"message": "Internal Server Error"}')
        else:
            send_json(self, 200, b'{"not": "an OpenAPI document"}')

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("mode", ["500", "not-openapi"])
def test_web_healthcheck_fails_on_a_wrong_answer(app_env, mode) -> None:
    server = serve_http(_Broken)
    server.mode = mode
    try:
        done = run_check("web", app_env("web", PORT=str(server.server_address[1])))
    finally:
        server.shutdown()
    assert done.returncode != 0
    assert ("HTTP 500" if mode == "500" else "not an OpenAPI document") in done.stderr, done.stderr


# -- worker ----------------------------------------------------------------------------------
def _registered(redis_url: str, queue: str) -> list[Worker]:
    with Redis.from_url(redis_url) as connection:
        return Worker.all(queue=Queue(queue, connection=connection))


def _forget(redis_url: str, queue: str) -> None:
    for worker in _registered(redis_url, queue):
        worker.register_death()


def test_worker_healthcheck_follows_the_compose_worker_command(app_env, test_settings, tmp_path) -> None:
    queue = f"athena-healthcheck-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    redis_url = test_settings["redis_url"]
    env = app_env("worker", ATHENA_QUEUE=queue)
    log_path = tmp_path / "worker.log"

    before = run_check("worker", env)
    assert before.returncode != 0 and f"for queue '{queue}'" in before.stderr, before.stderr

    # Healthy while it runs; a SIGTERM (warm shutdown) unregisters it: unhealthy.
    process = start("worker", env, log_path)
    try:
        healthy_soon("worker", env, process, log_path)
    finally:
        code = stop(process)
    assert code == 0, f"worker exited {code} on SIGTERM:\n{log_path.read_text()[-3000:]}"
    assert not _registered(redis_url, queue)
    assert run_check("worker", env).returncode != 0

    # Killed without clean-up (SIGKILL, OOM): its registration outlives it, the pid check does not.
    process = start("worker", env, log_path)
    try:
        healthy_soon("worker", env, process, log_path)
        stop(process, signal.SIGKILL)
        assert [w.pid for w in _registered(redis_url, queue)] == [process.pid], "expected a stale registration"
        dead = run_check("worker", env)
        assert dead.returncode != 0 and "no live process" in dead.stderr, dead.stderr
    finally:
        stop(process, signal.SIGKILL)
        _forget(redis_url, queue)


def test_worker_healthcheck_fails_when_redis_does_not_answer(app_env) -> None:
    done = run_check("worker", app_env("worker", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    assert done.returncode != 0 and "Redis does not answer" in done.stderr, done.stderr
