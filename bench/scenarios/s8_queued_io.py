"""Scenario 8: the queued path with I/O (issue 16).

Two workflows call an instant loopback JSON service (:mod:`bench.jsonserver`) with an
``http_request`` node, which is not pure, so ``?wait=true`` does not run them inline in the API:
they go through the RQ queue to a worker, and the API answers when the worker's
``execution.finished`` reaches it.

* ``io1``: webhook -> ``http_request`` (GET) -> answer
* ``io5``: webhook -> ``http_request`` -> 3 ``set`` -> answer

The web tier is put in the ``make run`` shape first: 1 gunicorn process (gthread, ``--threads``
threads), 1 RQ worker. Measured:

a. ``http_wait``: sequential ``POST /webhook?wait=true``, ``reps`` x ``s8_requests`` per workflow
   (p50/p95/p99 as in scenario 1), with the server-side split created -> started -> stopped
   and the CPU per execution (web, worker, embedded Redis);
b. ``websocket_queued``: sequential ``POST /webhook`` without ``wait`` (202 at once), time until
   that execution's ``execution.finished`` arrives on an already open workspace WebSocket
   (scenario 1's watcher);
c. closed-loop ``?wait=true`` throughput with p50/p99 at ``s8_clients`` clients, with 1 and 2
   workers (scenario 3's ``level``), CPU per execution;
d. ``counts``: Redis commands per io1 execution (``INFO commandstats`` deltas minus the idle
   baseline) over ``s8_count_executions`` sequential executions, and SQL statements per
   execution when the stack counts them (``--profile`` runs a second stack with
   ``bench/sqlcount``: see :func:`bench.orchestration.run_s8_profile`).

The JSON service counts the calls it answered: ``target_calls`` vs the completed executions."""
from __future__ import annotations

import statistics
import time
from typing import Any

from bench import counts
from bench.client import sequential
from bench.report import across_reps, r3
from bench.scenarios.common import CpuPerExec, Ctx, loadavg, ms, parse_ts, wait_request, warmup
from bench.scenarios.s1_latency import _via_websocket
from bench.scenarios.s3_throughput import level
from bench.workflows import http_io

WORKFLOWS = {"io1": ("webhook -> http_request -> answer", 0),
             "io5": ("webhook -> http_request -> 3 set -> answer", 3)}


def create_workflows(ctx: Ctx, target_base: str) -> None:
    for name, (_what, sets) in WORKFLOWS.items():
        ctx.workflows[name] = ctx.stack.create_workflow(f"s8 {name}", *http_io(f"{target_base}/{name}", sets))


def make_run_shape(ctx: Ctx) -> int:
    """1 gunicorn process (the ``make run`` shape); returns the previous process count."""
    stack = ctx.stack
    previous = stack.web_workers
    if previous != 1:
        stack.web_workers = 1
        stack.start_web(stack.threads)
    stack.set_workers(1)
    return previous


def sequential_wait(ctx: Ctx, name: str) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    wf = ctx.workflows[name]
    api = stack.api(s.request_timeout)
    reps, errors, queue_ms, run_ms = [], 0, [], []
    with CpuPerExec(stack) as cpu:
        try:
            for rep in range(s.reps):
                samples = sequential(lambda: wait_request(api, wf, keep_body=True), s.s8_requests,
                                     max_seconds=s.s8_requests * 2.0 + 30)
                errors += sum(1 for x in samples if not x.ok)
                reps.append(ms(samples))
                for x in samples:
                    data = (x.body or {}).get("data") or {}
                    created, started, stopped = (parse_ts(data.get(k)) for k in ("created_at", "started_at",
                                                                                   "stopped_at"))
                    if created and started and stopped:
                        queue_ms.append((started - created) * 1000)
                        run_ms.append((stopped - started) * 1000)
                ctx.log(f"  s8 {name} http wait=true rep {rep + 1}: "
                        f"p50 {statistics.median(reps[-1]) if reps[-1] else float('nan'):.2f} ms")
        finally:
            api.close()
    return {"http_wait": across_reps(reps), "http_wait_errors": errors,
            "cpu_ms_per_exec": cpu.per_exec_ms(sum(len(r) for r in reps)),
            "server_split_p50_ms": {"created_to_started": r3(statistics.median(queue_ms)) if queue_ms else None,
                                    "started_to_stopped": r3(statistics.median(run_ms)) if run_ms else None}}


def count_io1(ctx: Ctx) -> dict[str, Any]:
    """Redis commands (and SQL statements, if counted) per sequential io1 ``?wait=true`` execution."""
    stack, s = ctx.stack, ctx.settings
    api = stack.api(s.request_timeout)
    try:
        def phase() -> int:
            samples = sequential(lambda: wait_request(api, ctx.workflows["io1"]), s.s8_count_executions,
                                 max_seconds=s.s8_count_executions * 2.0 + 30)
            return sum(1 for x in samples if x.ok)

        return counts.measure(stack, phase)
    finally:
        api.close()


def run(ctx: Ctx) -> dict[str, Any]:
    from bench.jsonserver import JsonServer

    s, stack = ctx.settings, ctx.stack
    out: dict[str, Any] = {"load_before": loadavg(), "workflows": {k: v[0] for k, v in WORKFLOWS.items()}}
    previous_web = make_run_shape(ctx)
    out["shape"] = {"web_processes": stack.web_workers, "threads": stack.threads,
                    "workers": len(stack.worker_pids()), "note": "make run: 1 API process (gthread), 1 RQ worker"}
    try:
        with JsonServer() as target:
            out["target"] = "bench.jsonserver on 127.0.0.1 (instant JSON, keep-alive HTTP/1.1, threaded)"
            create_workflows(ctx, target.base)
            completed = 0
            for name in WORKFLOWS:
                out[f"{name}_warmup_errors"] = warmup(stack, ctx.workflows[name], s.warmup)
            served0 = target.served
            for name in WORKFLOWS:
                part = sequential_wait(ctx, name)
                part["websocket_queued"], part["websocket_queued_errors"] = _via_websocket(
                    ctx, ctx.workflows[name], wait=False, label=f"s8 {name}")
                completed += part["http_wait"]["pooled"]["n"] + part["websocket_queued"]["pooled"]["n"]
                out[name] = part
            out["target_calls"] = {"served": target.served - served0, "completed_executions": completed}
            ctx.log("  s8 counts (io1, sequential)")
            out["counts_io1"] = count_io1(ctx)
            ctx.log(f"  s8 io1: {out['counts_io1']['redis_commands_per_exec']} Redis commands per execution")
            levels = []
            for workers in s.s8_workers:
                stack.set_workers(workers)
                for name in WORKFLOWS:
                    warmup(stack, ctx.workflows[name], max(5, s.warmup // 3))
                    for clients in s.s8_clients:
                        result = level(ctx, name, clients, s.s8_seconds, s.s3_windows)
                        levels.append(result)
                        ctx.log(f"  s8 {name} workers={workers} clients={clients}: {result['exec_per_s']} exec/s, "
                                f"errors {result['errors']}, p50 {result['latency'].get('p50_ms')} ms, "
                                f"p99 {result['latency'].get('p99_ms')} ms, "
                                f"cpu/exec {result['cpu_ms_per_exec'].get('total')} ms")
                        time.sleep(1.0)  # let stragglers finish before the next level
            out["closed_loop"] = {"level_seconds": s.s8_seconds, "windows": s.s3_windows, "levels": levels}
    finally:
        stack.set_workers(1)
        if previous_web != stack.web_workers:
            stack.web_workers = previous_web
            stack.start_web(stack.threads)
    out["load_after"] = loadavg()
    return out
