"""Scenario 1: trigger to completion of a 1-node workflow (webhook -> 1 set), sequential.

* ``http_wait``: ``POST /webhook?wait=true``, time until the 200 with the finished execution.
* ``websocket``: the same ``POST /webhook?wait=true``, time until ``execution.finished`` of that
  execution arrives on an already open workspace WebSocket (read by a background thread).
* ``websocket_queued``: ``POST /webhook`` without ``wait`` (202 at once, the execution goes
  through the queue and a worker), time until its ``execution.finished`` arrives likewise.
Also kept: the server-side split of the HTTP answers (created -> started -> stopped)."""
from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

from bench.client import WsClient, sequential
from bench.report import across_reps, r3
from bench.scenarios.common import BODY_BYTES, CpuPerExec, Ctx, loadavg, ms, parse_ts, wait_request, warmup, webhook_path


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
    out["websocket"], out["websocket_errors"] = _via_websocket(ctx, wf, wait=True)
    out["websocket_queued"], out["websocket_queued_errors"] = _via_websocket(ctx, wf, wait=False)
    out["load_after"] = loadavg()
    return out


class FinishWatcher(threading.Thread):
    """Reads the workspace WebSocket in the background: receipt time of each execution.finished."""

    def __init__(self, ws: WsClient) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.finished: dict[str, tuple[float, str | None]] = {}
        self.changed = threading.Condition()
        self.running = True

    def run(self) -> None:
        while self.running:
            message = self.ws.recv(timeout=0.5)
            if message is None:
                continue
            received, event = message
            if event.get("event") == "execution.finished":
                with self.changed:
                    self.finished[event.get("execution_uuid")] = (received, event.get("status"))
                    self.changed.notify_all()

    def wait_for(self, uuid: str, timeout: float) -> tuple[float, str | None] | None:
        with self.changed:
            self.changed.wait_for(lambda: uuid in self.finished, timeout)
            return self.finished.pop(uuid, None)


def _via_websocket(ctx: Ctx, wf: str, wait: bool, label: str = "s1") -> tuple[dict[str, Any], int]:
    """Trigger (``?wait=true`` or not) and time until that execution's ``execution.finished``
    arrives on the already open workspace socket (read by a background thread, so the receipt
    time does not wait for the HTTP answer)."""
    s, stack = ctx.settings, ctx.stack
    api = stack.api(s.request_timeout)
    ws = WsClient(f"{stack.ws_base}/api/v1/ws/workspaces/{stack.workspace_uuid}/executions?token={stack.token}")
    reps, errors = [], 0
    first = ws.recv(timeout=10)
    assert first and first[1].get("event") == "snapshot", first
    watcher = FinishWatcher(ws)
    watcher.start()
    try:
        path = webhook_path(wf, wait=wait)
        for rep in range(s.reps):
            values = []
            deadline = time.monotonic() + s.s1_ws_requests * 2.0 + 30
            for _ in range(s.s1_ws_requests):
                if time.monotonic() > deadline:
                    break
                t0 = time.time()
                try:
                    status, content = api.poster.post(path, BODY_BYTES)
                except Exception:  # noqa: BLE001 - transport errors, counted
                    status, content = 0, b""
                if status not in (200, 202):
                    errors += 1
                    continue
                got = watcher.wait_for(json.loads(content)["data"]["uuid"], 30)
                if got is None or got[1] != "completed":
                    errors += 1
                    continue
                values.append((got[0] - t0) * 1000)
            reps.append(values)
            ctx.log(f"  {label} ws ({'wait=true' if wait else 'queued'}) rep {rep + 1}: "
                    f"p50 {statistics.median(values) if values else float('nan'):.2f} ms")
    finally:
        watcher.running = False
        watcher.join(timeout=2)
        ws.close()
        api.close()
    return across_reps(reps), errors
