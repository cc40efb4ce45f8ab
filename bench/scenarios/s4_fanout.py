"""Scenario 4: WebSocket fan-out on one workspace channel.

Per level (1/10/100 clients) and repetition: the clients connect and read their snapshot
(``last_seq``), then ``s4_executions`` 1-node executions are started at ``s4_rate`` per second
(webhook without wait). Every client reads until it has ``execution.finished`` of each of them.
Latency = client receipt (``time.time()`` right after ``recv``) - the event's ``ts`` (taken by the
writer right after its commit, when it appended to the log). The workspace channel's ``seq``
is gap-free by construction, so per client: lost = seqs of (snapshot, highest seq seen by any
client] never received, duplicated = seqs received twice, out of order = a seq lower than the
previous one. The web server gets enough threads for every socket (``s4`` restarts it)."""
from __future__ import annotations

import threading
import time
from typing import Any

from bench.client import WsClient
from bench.report import across_reps
from bench.scenarios.common import BODY, Ctx, loadavg, parse_ts, webhook_path

FINISHED = "execution.finished"


class Listener(threading.Thread):
    def __init__(self, url: str, expected: set[str], deadline: float) -> None:
        super().__init__(daemon=True)
        self.ws = WsClient(url)
        first = self.ws.recv(timeout=15)
        if not first or first[1].get("event") != "snapshot":
            raise RuntimeError(f"no snapshot: {first}")
        self.last_seq = int(first[1].get("last_seq") or 0)
        self.expected = expected
        self.deadline = deadline
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.finished: set[str] = set()
        self.go = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                message = self.ws.recv(timeout=1.0)
                if message is None:
                    if self.go.is_set() and self.expected and self.expected <= self.finished:
                        return
                    continue
                self.received.append(message)
                event = message[1]
                if event.get("event") == FINISHED:
                    self.finished.add(event.get("execution_uuid"))
                    if self.go.is_set() and self.expected <= self.finished:
                        return
        except Exception as exc:  # noqa: BLE001 - reported, counted as lost events
            self.error = repr(exc)
        finally:
            self.ws.close()


def one_rep(ctx: Ctx, clients: int) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    url = f"{stack.ws_base}/api/v1/ws/workspaces/{stack.workspace_uuid}/executions?token={stack.token}"
    expected: set[str] = set()
    deadline = time.monotonic() + 60 + s.s4_executions / s.s4_rate
    listeners = [Listener(url, expected, deadline) for _ in range(clients)]
    for listener in listeners:
        listener.start()
    api = stack.api(s.request_timeout)
    errors = 0
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
    for listener in listeners:
        listener.go.set()
    for listener in listeners:
        listener.join(timeout=max(1.0, deadline - time.monotonic() + 5))
    top = max((e["seq"] for lst in listeners for _, e in lst.received if "seq" in e), default=0)
    latencies, lost, duplicated, out_of_order, missing_finish = [], 0, 0, 0, 0
    for listener in listeners:
        seqs = [e["seq"] for _, e in listener.received if "seq" in e]
        seen = set(seqs)
        lost += len(set(range(listener.last_seq + 1, top + 1)) - seen)
        duplicated += len(seqs) - len(seen)
        out_of_order += sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
        missing_finish += len(expected - listener.finished)
        for received, event in listener.received:
            ts = parse_ts(event.get("ts"))
            if ts is not None:
                latencies.append((received - ts) * 1000)
    return {"latencies": latencies, "lost": lost, "duplicated": duplicated, "out_of_order": out_of_order,
            "missing_finished": missing_finish, "errors": errors + sum(1 for lst in listeners if lst.error),
            "listener_errors": [lst.error for lst in listeners if lst.error][:3],
            "events_expected": sum(max(0, top - lst.last_seq) for lst in listeners), "executions": len(expected)}


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
                 "listener_errors": [e for r in reps for e in r["listener_errors"]][:3]}
        out["levels"].append(level)
        ctx.log(f"  s4 clients={clients}: p50 {level['latency']['p50_ms']} ms p99 {level['latency']['p99_ms']} ms "
                f"lost {level['lost']} dup {level['duplicated']} missing finished {level['missing_finished']}")
    out["load_after"] = loadavg()
    return out
