"""Scenario 1: trigger to completion of a 1-node workflow (webhook -> 1 set), sequential.

* ``http_wait``: ``POST /webhook?wait=true``, time until the 200 with the finished execution.
* ``websocket``: ``POST /webhook`` (202 at once), time until ``execution.finished`` of that
  execution arrives on an already open workspace WebSocket.
Also kept: the server-side split of the HTTP answers (created -> started -> stopped)."""
from __future__ import annotations

import statistics
import time
from typing import Any

from bench.client import WsClient, sequential
from bench.report import across_reps, r3
from bench.scenarios.common import BODY, CpuPerExec, Ctx, loadavg, ms, parse_ts, wait_request, warmup, webhook_path


def run(ctx: Ctx) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    wf = ctx.workflows["bench1"]
    out: dict[str, Any] = {"workflow": "webhook -> 1 set", "load_before": loadavg(),
                           "warmup_errors": warmup(stack, wf, s.warmup)}
    api = stack.api(s.request_timeout)
    reps, errors, queue_ms, run_ms = [], 0, [], []
    cpu = CpuPerExec(stack).__enter__()
    try:
        for rep in range(s.reps):
            samples = sequential(lambda: wait_request(api, wf, keep_body=True), s.s1_requests,
                                 max_seconds=s.s1_requests * 2.0 + 30)
            errors += sum(1 for x in samples if not x.ok)
            reps.append(ms(samples))
            for x in samples:
                data = (x.body or {}).get("data") or {}
                created, started, stopped = (parse_ts(data.get(k)) for k in ("created_at", "started_at", "stopped_at"))
                if created and started and stopped:
                    queue_ms.append((started - created) * 1000)
                    run_ms.append((stopped - started) * 1000)
            ctx.log(f"  s1 http rep {rep + 1}: p50 {statistics.median(reps[-1]) if reps[-1] else None:.2f} ms")
    finally:
        api.close()
    cpu.__exit__()
    out["cpu_ms_per_exec"] = cpu.per_exec_ms(sum(len(r) for r in reps))
    out["http_wait"] = across_reps(reps)
    out["http_wait_errors"] = errors
    out["server_split_p50_ms"] = {"created_to_started": r3(statistics.median(queue_ms)) if queue_ms else None,
                                  "started_to_stopped": r3(statistics.median(run_ms)) if run_ms else None}
    out["websocket"], out["websocket_errors"] = _via_websocket(ctx, wf)
    out["load_after"] = loadavg()
    return out


def _via_websocket(ctx: Ctx, wf: str) -> tuple[dict[str, Any], int]:
    s, stack = ctx.settings, ctx.stack
    api = stack.api(s.request_timeout)
    ws = WsClient(f"{stack.ws_base}/api/v1/ws/workspaces/{stack.workspace_uuid}/executions?token={stack.token}")
    reps, errors = [], 0
    try:
        first = ws.recv(timeout=10)
        assert first and first[1].get("event") == "snapshot", first
        path = webhook_path(wf, wait=False)
        for rep in range(s.reps):
            values = []
            deadline = time.monotonic() + s.s1_ws_requests * 2.0 + 30
            for _ in range(s.s1_ws_requests):
                if time.monotonic() > deadline:
                    break
                t0 = time.time()
                response = api.post(path, json=BODY)
                if response.status_code != 202:
                    errors += 1
                    continue
                uuid = response.json()["data"]["uuid"]
                got = None
                wait_until = time.monotonic() + 30
                while time.monotonic() < wait_until:
                    message = ws.recv(timeout=max(0.1, wait_until - time.monotonic()))
                    if message is None:
                        break
                    received, event = message
                    if event.get("event") == "execution.finished" and event.get("execution_uuid") == uuid:
                        got = received
                        break
                if got is None or event.get("status") != "completed":
                    errors += 1
                    continue
                values.append((got - t0) * 1000)
            reps.append(values)
            ctx.log(f"  s1 ws rep {rep + 1}: p50 {statistics.median(values) if values else float('nan'):.2f} ms")
    finally:
        ws.close()
        api.close()
    return across_reps(reps), errors
