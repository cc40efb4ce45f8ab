"""Scenario 5: stop latency.

Cases: a long ``wait`` node (the execution is ``waiting``, no worker holds it); a long
``http_request`` whose server drips its body (stop is checked between chunks); a long
``http_request`` whose server is silent before the headers; the middle of a 499-set chain
(the longest a workflow may be; pure nodes are checkpointed in batches, so its first visible
``node.started`` is the cue, and a chain that still finishes first is counted apart, not timed).
For each stop: the execution WebSocket is open; once the node is under way the client sends
``POST /stop`` and measures (a) the answer of the stop call, which carries status
``cancelled`` (written first), and (b) the ``ts`` of the ``execution.finished`` event, which the
worker appends after it abandoned the node (for a waiting execution the API appends it)."""
from __future__ import annotations

import time
from typing import Any, Callable

from bench.client import WsClient
from bench.report import summarize
from bench.scenarios.common import BODY, Ctx, loadavg, parse_ts, webhook_path
from bench.slowserver import SlowServer
from bench.workflows import http_then_set, set_chain, wait_then_set

Ready = Callable[[dict[str, Any]], bool]


def _stop_once(ctx: Ctx, workflow_uuid: str, ready: Ready, settle: float, timeout: float = 30.0) -> dict[str, Any]:
    stack = ctx.stack
    api = stack.api(ctx.settings.request_timeout)
    ws = None
    try:
        response = api.post(webhook_path(workflow_uuid, wait=False), json=BODY)
        if response.status_code != 202:
            return {"error": f"trigger HTTP {response.status_code}"}
        uuid = response.json()["data"]["uuid"]
        ws = WsClient(f"{stack.ws_base}/api/v1/ws/workflow-executions/{uuid}?token={stack.token}")
        deadline = time.monotonic() + timeout
        while True:
            message = ws.recv(timeout=max(0.05, deadline - time.monotonic()))
            if message is None or time.monotonic() > deadline:
                return {"error": "never became ready"}
            event = message[1]
            if ready(event):
                break
            if event.get("event") == "execution.finished":
                return {"error": "finished before the stop"}
        if settle:
            time.sleep(settle)
        t0 = time.time()
        try:
            stop = api.post(f"/api/v1/workflow-executions/{uuid}/stop")
        except OSError as exc:  # requests' ConnectionError is an OSError
            return {"error": f"stop request failed: {type(exc).__name__}"}
        t_api = time.time()
        if stop.status_code == 409 and "completed" in stop.text:
            return {"error": "finished before the stop"}
        if stop.status_code != 200 or stop.json()["data"]["status"] != "cancelled":
            return {"error": f"stop HTTP {stop.status_code} {stop.text[:120]}"}
        while True:
            message = ws.recv(timeout=max(0.05, deadline - time.monotonic()))
            if message is None or time.monotonic() > deadline:
                return {"error": "no execution.finished after the stop"}
            received, event = message
            if event.get("event") == "execution.finished":
                ts = parse_ts(event.get("ts")) or received
                return {"api_ms": (t_api - t0) * 1000, "finished_ms": (ts - t0) * 1000,
                        "received_ms": (received - t0) * 1000, "status": event.get("status")}
    finally:
        if ws is not None:
            ws.close()
        api.close()


def _is(event_name: str, **match: Any) -> Ready:
    def check(event: dict[str, Any]) -> bool:
        if event.get("event") != event_name:
            return False
        return all(event.get(k) == v for k, v in match.items())
    return check


def run(ctx: Ctx) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    out: dict[str, Any] = {"load_before": loadavg(), "cases": []}
    with SlowServer() as slow:
        cases = [
            ("long wait node (60 s)", wait_then_set(60), _is("execution.status", status="waiting"), 0.05, s.s5_stops),
            ("long HTTP node, body dripping (30 s)", http_then_set(f"{slow.base}/drip?seconds=30", 60),
             _is("node.started", node_id="call"), 0.2, s.s5_stops),
            ("middle of a 499-set chain", set_chain(499), _is("node.started"), 0.0, s.s5_stops),
            ("long HTTP node, silent before headers (3 s)", http_then_set(f"{slow.base}/slow-headers?seconds=3", 10),
             _is("node.started", node_id="call"), 0.3, s.s5_slow_header_stops),
        ]
        for name, (nodes, edges), ready, settle, count in cases:
            wf = stack.create_workflow(f"stop: {name}", nodes, edges)
            results = [_stop_once(ctx, wf, ready, settle) for _ in range(count)]
            good = [r for r in results if "error" not in r]
            first = sum(1 for r in results if r.get("error") == "finished before the stop")
            case = {"case": name, "stops": count, "errors": len(results) - len(good) - first,
                    "finished_before_the_stop": first,
                    "error_kinds": sorted({r["error"] for r in results if "error" in r}),
                    "statuses": sorted({r.get("status") for r in good}),
                    "api": summarize(r["api_ms"] for r in good),
                    "finished": summarize(r["finished_ms"] for r in good),
                    "received": summarize(r["received_ms"] for r in good)}
            out["cases"].append(case)
            ctx.log(f"  s5 {name}: api p50 {case['api'].get('p50_ms')} ms, finished p50 "
                    f"{case['finished'].get('p50_ms')} p99 {case['finished'].get('p99_ms')} ms, errors {case['errors']}")
    out["load_after"] = loadavg()
    return out
