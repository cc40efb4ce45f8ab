"""Per-execution counts on the queued path: Redis commands (``INFO commandstats`` deltas of the
stack's Redis: cheap, no ``MONITOR``) and SQL statements (the bench-only counter of
``bench/sqlcount``, when the stack was started with ``count_sql``).

A phase of N executions is measured as (counts after − counts before − idle baseline) / N,
where the idle baseline is what the stack does on its own (worker heartbeats, dequeue
timeouts, the WebSocket hub, scheduler ticks) over the same duration with no load."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable


def commandstats(client) -> Counter[str]:  # noqa: ANN001 - redis.Redis
    stats = client.info("commandstats")
    out: Counter[str] = Counter()
    for key, value in stats.items():
        name = key[len("cmdstat_"):] if key.startswith("cmdstat_") else key
        out[name] = int(value["calls"]) if isinstance(value, dict) else 0
    return out


def sql_totals(directory: Path | None, roles: dict[int, str] | None = None) -> Counter[str]:
    """Sum of every process's counts; with ``roles`` (pid -> web/worker) also ``<role>/<key>``."""
    out: Counter[str] = Counter()
    if directory is None or not directory.is_dir():
        return out
    for path in directory.glob("*.json"):
        try:
            counts = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced: the next read has it
        out.update(counts)
        role = (roles or {}).get(int(path.stem)) if path.stem.isdigit() else None
        if role:
            out.update({f"{role}/{k}": v for k, v in counts.items() if "statements" in k or k == "commits"})
    return out


def _roles(stack) -> dict[int, str]:  # noqa: ANN001
    roles = {pid: "web" for pid in [stack.web_master_pid(), *stack.web_worker_pids()]}
    roles.update({pid: "worker" for pid in stack.worker_pids()})
    return roles


def _snapshot(stack) -> tuple[Counter[str], Counter[str]]:  # noqa: ANN001 - bench.stack.Stack
    return commandstats(stack._redis()), sql_totals(stack.sql_count_dir, _roles(stack))


SETTLE = 0.6  # > the counter's 0.2 s write period, and the last events of the phase


def measure(stack, run: Callable[[], int], idle_seconds: float | None = None) -> dict[str, Any]:  # noqa: ANN001
    """``run()`` executes the phase and returns how many executions completed."""
    time.sleep(SETTLE)
    r0, s0 = _snapshot(stack)
    t0 = time.monotonic()
    executions = run()
    seconds = time.monotonic() - t0
    time.sleep(SETTLE)
    r1, s1 = _snapshot(stack)
    idle = min(idle_seconds if idle_seconds is not None else seconds, 30.0)
    i0, j0 = _snapshot(stack)
    time.sleep(idle)
    i1, j1 = _snapshot(stack)
    # the INFO calls of the snapshots themselves are in the deltas: take them out
    r_delta, i_delta = r1 - r0, i1 - i0
    for delta in (r_delta, i_delta):
        delta["info"] = max(0, delta.get("info", 0) - 1)
    scale = (seconds + 2 * SETTLE) / idle if idle else 0.0

    def per_exec(delta: Counter[str], baseline: Counter[str]) -> dict[str, float]:
        keys = set(delta) | set(baseline)
        out = {k: round((delta.get(k, 0) - scale * baseline.get(k, 0)) / max(executions, 1), 2) for k in keys}
        return dict(sorted(((k, v) for k, v in out.items() if abs(v) >= 0.01), key=lambda kv: -kv[1]))

    redis = per_exec(r_delta, i_delta)
    out: dict[str, Any] = {"executions": executions, "seconds": round(seconds, 2), "idle_baseline_seconds": idle,
                           "redis_commands_per_exec": round(sum(v for k, v in redis.items()), 2),
                           "redis_by_command": redis,
                           "redis_idle_per_s": round(sum(i_delta.values()) / idle, 2) if idle else None}
    if stack.sql_count_dir is not None:
        sql = per_exec(s1 - s0, j1 - j0)
        out["sql_statements_per_exec"] = sql.get("statements")
        out["sqlite_statements_per_exec"] = sql.get("sqlite_statements")
        out["sql_commits_per_exec"] = sql.get("commits")
        out["sql_by_process"] = {k: v for k, v in sql.items() if "/" in k}
        out["sql_by_kind"] = {k: v for k, v in sql.items() if k.startswith(("stmt:", "sqlite:", "rollbacks"))}
    else:
        out["sql"] = "not counted (stack without count_sql: see --profile)"
    return out
