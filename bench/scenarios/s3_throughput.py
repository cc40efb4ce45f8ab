"""Scenario 3: closed-loop throughput of ``?wait=true`` webhooks.

For each worker count (the stack's RQ worker processes), workflow (bench1 = 1 set, bench5 = 5
sets) and client count: ``s3_seconds`` of closed loop. A level's repetitions are
``s3_windows`` equal time windows (completions per second in each); errors are non-200 answers,
executions that did not complete and transport errors. CPU of the web and worker processes
comes from /proc (share of one core, so 200 % = both cores)."""
from __future__ import annotations

import time
from typing import Any, Callable

from bench.client import closed_loop
from bench.procstats import CpuShare, cpu_seconds
from bench.report import median_spread, r3, summarize
from bench.scenarios.common import CpuPerExec, Ctx, loadavg, ms, wait_request, warmup


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def level(ctx: Ctx, workflow: str, clients: int, seconds: float, windows: int,
          on_level: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    stack, s = ctx.stack, ctx.settings
    wf = ctx.workflows[workflow]
    web_pids = [stack.web_master_pid(), *stack.web_worker_pids()]
    worker_pids = stack.worker_pids()

    def make():
        api = stack.api(s.request_timeout)
        return (lambda: wait_request(api, wf)), api.close

    web0, wrk0, wall0 = _cpu(web_pids), _cpu(worker_pids), time.perf_counter()
    with CpuShare(stack) as share, CpuPerExec(stack) as per_exec:
        result = closed_loop(make, clients, seconds)
    web1, wrk1, wall1 = _cpu(web_pids), _cpu(worker_pids), time.perf_counter()
    ok = [x for x in result.samples if x.ok]
    errors = [x for x in result.samples if not x.ok]
    kinds: dict[str, int] = {}
    for x in errors:
        kinds[x.error or "?"] = kinds.get(x.error or "?", 0) + 1
    width = seconds / windows
    counts = [0] * windows
    for x in ok:
        index = int((x.started + x.seconds - result.t0) / width)
        if 0 <= index < windows:
            counts[index] += 1
    per_window = [c / width for c in counts]
    wall = max(result.wall, 1e-9)
    out = {
        "workflow": workflow, "workers": len(worker_pids), "clients": clients, "seconds": seconds,
        "completed": len(ok), "errors": len(errors), "error_kinds": kinds,
        # completions inside the timed window (the last answers may come a little after it)
        "exec_per_s": r3(sum(counts) / seconds),
        "exec_per_s_wall": r3(len(ok) / wall),
        "window_exec_per_s": median_spread(per_window),
        "latency": summarize(ms(ok)),
        "cpu": {"web_pct": r3(100 * (web1 - web0) / (wall1 - wall0)),
                "workers_pct": r3(100 * (wrk1 - wrk0) / (wall1 - wall0))},
        "load_after": loadavg(),
        "foreign_cpu_pct": share.result["foreign_pct"],
        "cpu_ms_per_exec": per_exec.per_exec_ms(len(ok)),
    }
    if on_level:
        on_level(out)
    return out


def run(ctx: Ctx, after_workers: Callable[[int], None] | None = None) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    out: dict[str, Any] = {"level_seconds": s.s3_seconds, "windows": s.s3_windows, "load_before": loadavg(), "levels": []}
    for workers in s.s3_workers:
        stack.set_workers(workers)
        for workflow in s.s3_workflows:
            warmup(stack, ctx.workflows[workflow], max(5, s.warmup // 3))
            for clients in s.s3_clients:
                result = level(ctx, workflow, clients, s.s3_seconds, s.s3_windows)
                out["levels"].append(result)
                ctx.log(f"  s3 {workflow} workers={workers} clients={clients}: {result['exec_per_s']} exec/s, "
                        f"errors {result['errors']}, p50 {result['latency'].get('p50_ms')} ms, "
                        f"p99 {result['latency'].get('p99_ms')} ms, cpu {result['cpu']}")
                time.sleep(1.0)  # let stragglers finish before the next level
        if after_workers:
            after_workers(workers)
    return out
