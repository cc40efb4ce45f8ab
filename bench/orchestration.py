"""The phases of one benchmark run, called by the CLI (:mod:`bench.run`): the scenarios on one
database's stack (:func:`run_database`), the py-spy profiles of scenarios 2 and 3
(:func:`run_profiles`) and the peers (:func:`run_peers`); each scenario is guarded so that one
failure does not lose the others, and its CPU share is recorded."""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from typing import Any

from bench import report
from bench.environment import _cmd, _server_versions
from bench.procstats import CpuShare, wait_quiet
from bench.scenarios.common import Ctx, Settings, warmup
from bench.stack import ROOT, Stack
from bench.workflows import set_chain


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- one database
def create_workflows(stack: Stack) -> dict[str, str]:
    return {name: stack.create_workflow(name, *set_chain(count))
            for name, count in (("bench1", 1), ("bench5", 5), ("bench40", 40))}


def run_database(db: str, scenarios: list[int], settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from bench.scenarios import (s1_latency, s2_per_node, s3_throughput, s4_fanout, s5_stop,
                                 s6_read_path, s8_queued_io)

    stack = Stack(db=db, redis="embedded" if db == "sqlite" else "server", threads=args.threads, workers=1,
                  label=args.label, pg_admin_url=args.pg_url, server_redis_url=args.redis_url, redis_db=args.redis_db,
                  keep_instance=args.keep_instance)
    if args.inline_max_nodes is not None:  # 0: every execution goes through the queue and a worker
        stack.extra_env["ATHENA_INLINE_MAX_NODES"] = str(args.inline_max_nodes)
    if args.ws_direct_write is not None:
        stack.extra_env["ATHENA_WS_DIRECT_WRITE"] = "1" if args.ws_direct_write == "on" else "0"
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
        if 8 in scenarios:  # last: it puts the web tier in the make-run shape (1 process) meanwhile
            log(f"[bench] {db}: scenario 8")
            out["s8"] = _guard(lambda: s8_queued_io.run(ctx), stack)
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
    if args.ws_direct_write is not None:
        stack.extra_env["ATHENA_WS_DIRECT_WRITE"] = "1" if args.ws_direct_write == "on" else "0"
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


def run_s8_profile(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Scenario 8's profile, on its own stack in the ``make run`` shape (1 gunicorn process,
    1 worker) with the bench-only SQL counter loaded (``bench/sqlcount``): Redis commands and
    SQL statements per io1 execution, then py-spy on the API and the worker while io1 runs
    sequentially and with 8 clients."""
    from bench import profile
    from bench.client import closed_loop, sequential
    from bench.jsonserver import JsonServer
    from bench.scenarios import s8_queued_io
    from bench.scenarios.common import wait_request

    if args.wait_quiet:
        wait_quiet(args.wait_quiet, args.quiet_threshold, log)
    seconds = 6.0 if args.quick else args.profile_seconds
    stack = Stack(db="sqlite", redis="embedded", threads=args.threads, workers=1, web_workers=1,
                  label=f"{args.label}-s8profile", count_sql=True)
    if args.ws_direct_write is not None:
        stack.extra_env["ATHENA_WS_DIRECT_WRITE"] = "1" if args.ws_direct_write == "on" else "0"
    stack.start()
    result: dict[str, Any] = {"db": "sqlite", "seconds": seconds, "shape": "1 gunicorn process, 1 worker"}
    try:
        with JsonServer() as target:
            ctx = Ctx(stack, settings, "sqlite", {}, log)
            s8_queued_io.create_workflows(ctx, target.base)
            wf = ctx.workflows["io1"]
            warmup(stack, wf, 20)
            log("[bench] s8 profile: counts per io1 execution (Redis commandstats, SQL statements)")
            result["counts_io1"] = s8_queued_io.count_io1(ctx)
            log(f"  io1: {result['counts_io1'].get('redis_commands_per_exec')} Redis commands, "
                f"{result['counts_io1'].get('sql_statements_per_exec')} SQL statements (SQLAlchemy), "
                f"{result['counts_io1'].get('sqlite_statements_per_exec')} sqlite3 statements per execution")
            pyspy, why = profile.ensure_pyspy(log)
            if pyspy is None:
                result["pyspy"] = {"skipped": why}
                return result
            result["pyspy"] = _cmd([pyspy, "--version"])
            out_dir = ROOT / "bench" / "results" / "profiles" / args.label
            out_dir.mkdir(parents=True, exist_ok=True)

            def seq_load() -> dict[str, Any]:
                api = stack.api()
                try:
                    samples = sequential(lambda: wait_request(api, wf), 100_000, seconds)
                    return {"requests": len(samples), "errors": sum(1 for s in samples if not s.ok)}
                finally:
                    api.close()

            log("[bench] s8 profile: io1 sequential ?wait=true, 1 worker")
            result["s8_seq"] = profile.profile_phase(pyspy, "s8-seq", "scenario 8: io1 (webhook -> http_request), "
                                                     "sequential ?wait=true, 1 worker", stack, seconds, seq_load,
                                                     out_dir, log)

            def loop_load() -> dict[str, Any]:
                def make():
                    api = stack.api()
                    return (lambda: wait_request(api, wf)), api.close

                loop = closed_loop(make, 8, seconds)
                ok = sum(1 for s in loop.samples if s.ok)
                return {"clients": 8, "completed": ok, "errors": len(loop.samples) - ok,
                        "exec_per_s": report.r3(ok / max(loop.wall, 1e-9))}

            log("[bench] s8 profile: io1 closed loop, 8 clients, 1 worker")
            result["s8_loop"] = profile.profile_phase(pyspy, "s8-loop", "scenario 8: io1, closed loop 8 clients, "
                                                      "1 worker", stack, seconds, loop_load, out_dir, log)
    finally:
        stack.stop()
    return result


# ---------------------------------------------------------------------------- peers
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
    scenarios = {int(x) for x in str(args.scenarios).split(",") if x.strip()}
    out: dict[str, Any] = {"n8n": {}}
    s1_requests = settings.s1_requests if args.quick else 100
    s2_requests = settings.s2_requests
    for config in configs:
        measured: dict[str, Any] = {}
        if scenarios & {1, 2, 3}:
            log(f"[bench] n8n ({config}): scenarios 1-3")
            try:
                measured = n8n.run(settings, config, s1_requests, s2_requests, log)
                measured["ratios"] = n8n.ratios(athena, measured)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                measured = {"failed": f"{type(exc).__name__}: {exc}"}
        if 8 in scenarios:
            log(f"[bench] n8n ({config}): scenario 8")
            try:
                s8 = n8n.run_s8(settings, config, log)
                measured.setdefault("config", config)
                measured.setdefault("version", s8.get("version"))
                measured["s8"] = s8
                measured["ratios"] = measured.get("ratios", []) + n8n.ratios_s8(athena.get("s8") or {}, s8)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                measured["s8"] = {"failed": f"{type(exc).__name__}: {exc}"}
        out["n8n"][config] = measured
    return out
