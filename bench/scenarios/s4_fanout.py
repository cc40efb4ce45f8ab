"""Scenario 4: WebSocket fan-out on one workspace channel.

Per level (1/10/100 clients) and repetition: the clients connect and read their snapshot
(``last_seq``), then ``s4_executions`` 1-node executions are started at ``s4_rate`` per second
(webhook without wait). Every client reads until it has ``execution.finished`` of each of them.
Latency = client receipt (``time.time()`` right after ``recv``) - the event's ``ts`` (taken by the
writer right after its commit, when it appended to the log). The workspace channel's ``seq``
is gap-free by construction, so per client: lost = seqs of (snapshot, highest seq seen by any
client] never received, duplicated = seqs received twice, out of order = a seq lower than the
previous one. The web server gets enough threads for every socket (``s4`` restarts it).
Client: :mod:`bench.wsreader`, a selector reader (one process per 100 sockets, one selector
loop each), because a thread per socket in the bench process measured its own GIL queueing.
Each level also records the CPU the reader, web, worker and bench processes used while the
executions ran (``cpu_pct``, 100 = one core) to show who competes for the machine's cores."""
from __future__ import annotations

import os
import time
from typing import Any

from bench.procstats import cpu_seconds
from bench.report import across_reps
from bench.scenarios.common import BODY, Ctx, loadavg, parse_ts, webhook_path
from bench.wsreader import FanoutReader

FINISHED = "execution.finished"


def _cpu(ctx: Ctx, reader_pids: list[int]) -> dict[str, float]:
    """CPU seconds so far of each group of processes (from /proc)."""
    stack = ctx.stack
    groups = {"readers": reader_pids, "web": [stack.web_master_pid(), *stack.web_worker_pids()],
              "workers": stack.worker_pids(), "bench": [os.getpid()]}
    if stack.embedded is not None:
        groups["redis"] = [stack.embedded.process.pid]
    return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}


def one_rep(ctx: Ctx, clients: int) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    url = f"{stack.ws_base}/api/v1/ws/workspaces/{stack.workspace_uuid}/executions?token={stack.token}"
    expected: set[str] = set()
    reader = FanoutReader(url, clients, processes=s.extra.get("s4_reader_processes"),
                          max_seconds=60 + s.s4_executions / s.s4_rate)
    reader.start()  # every socket has its snapshot
    api = stack.api(s.request_timeout)
    errors = 0
    cpu0, t0 = _cpu(ctx, reader.pids()), time.monotonic()
    try:
        path = webhook_path(ctx.workflows["bench1"], wait=False)
        interval = 1.0 / s.s4_rate
        t_next = time.monotonic()
        for _ in range(s.s4_executions):
            response = api.post(path, json=BODY)
            if response.status_code == 202:
                expected.add(response.json()["data"]["uuid"])
            else:
                errors += 1
            t_next += interval
            time.sleep(max(0.0, t_next - time.monotonic()))
    finally:
        api.close()
        cpu1, wall = _cpu(ctx, reader.pids()), time.monotonic() - t0
        results = reader.finish(expected)
    top = max((m.seq for r in results for m in r.messages if m.seq is not None), default=0)
    latencies, lost, duplicated, out_of_order, missing_finish = [], 0, 0, 0, 0
    for result in results:
        seqs = [m.seq for m in result.messages if m.seq is not None]
        seen = set(seqs)
        lost += len(set(range(result.last_seq + 1, top + 1)) - seen)
        duplicated += len(seqs) - len(seen)
        out_of_order += sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
        missing_finish += len(expected - result.finished)
        for message in result.messages:
            ts = parse_ts(message.ts)
            if ts is not None:
                latencies.append((message.received - ts) * 1000)
    listener_errors = [r.error for r in results if r.error]
    return {"latencies": latencies, "lost": lost, "duplicated": duplicated, "out_of_order": out_of_order,
            "missing_finished": missing_finish, "errors": errors + len(listener_errors),
            "listener_errors": listener_errors[:3],
            "events_expected": sum(max(0, top - r.last_seq) for r in results), "executions": len(expected),
            "reader_processes": reader.processes,
            "cpu_pct": {k: round(100 * (cpu1[k] - cpu0[k]) / max(wall, 1e-9), 1) for k in cpu1}}


def run(ctx: Ctx) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    threads = max(stack.threads, max(s.s4_clients) + 32)
    if threads != stack.threads:
        stack.start_web(threads)
    out: dict[str, Any] = {"web_threads": threads, "rate_per_s": s.s4_rate, "load_before": loadavg(), "levels": []}
    for clients in s.s4_clients:
        reps = [one_rep(ctx, clients) for _ in range(s.reps)]
        level = {"clients": clients, "latency": across_reps([r["latencies"] for r in reps]),
                 **{k: sum(r[k] for r in reps) for k in ("lost", "duplicated", "out_of_order", "missing_finished",
                                                         "errors", "events_expected", "executions")},
                 "listener_errors": [e for r in reps for e in r["listener_errors"]][:3],
                 "reader_processes": reps[0]["reader_processes"],
                 "cpu_pct": {k: round(sum(r["cpu_pct"][k] for r in reps) / len(reps), 1) for k in reps[0]["cpu_pct"]}}
        out["levels"].append(level)
        ctx.log(f"  s4 clients={clients}: p50 {level['latency']['p50_ms']} ms p99 {level['latency']['p99_ms']} ms "
                f"lost {level['lost']} dup {level['duplicated']} missing finished {level['missing_finished']}")
    out["load_after"] = loadavg()
    return out
