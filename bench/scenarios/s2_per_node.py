"""Scenario 2: per-node overhead from a 40-set chain vs the 1-set workflow.

Per repetition: ``s2_requests`` sequential ``?wait=true`` webhooks on bench1, then on bench40.
* client: (p50 bench40 - p50 bench1) / 39
* engine_span: from the node entries' started_at/stopped_at (first start to last stop):
  (median span40 - median span1) / 39
* engine_gap: median start-to-start gap between consecutive set nodes of the chain."""
from __future__ import annotations

import statistics
from typing import Any

from bench.client import sequential
from bench.report import across_reps, median_spread
from bench.scenarios.common import CpuPerExec, Ctx, loadavg, ms, parse_ts, wait_request, warmup


def _entries(api, uuid: str) -> list[dict[str, Any]]:
    data = api.json("GET", f"/api/v1/workflow-executions/{uuid}?with=workflowExecutionData")["data"]
    blocks = data.get("workflow_execution_data") or []
    return (blocks[0].get("workflow_data") or []) if blocks else []


def engine_times(api, uuids: list[str]) -> tuple[list[float], list[float]]:
    """(spans ms, start-to-start gaps ms) of the given executions."""
    spans, gaps = [], []
    for uuid in uuids:
        entries = _entries(api, uuid)
        starts = [parse_ts(e.get("started_at")) for e in entries]
        stops = [parse_ts(e.get("stopped_at")) for e in entries]
        if not entries or None in starts or None in stops:
            continue
        spans.append((max(stops) - min(starts)) * 1000)
        ordered = sorted(starts)
        gaps.extend((b - a) * 1000 for a, b in zip(ordered[1:], ordered[2:]))  # set -> set only
    return spans, gaps


def run(ctx: Ctx) -> dict[str, Any]:
    s, stack = ctx.settings, ctx.stack
    wf1, wf40 = ctx.workflows["bench1"], ctx.workflows["bench40"]
    out: dict[str, Any] = {"requests_per_rep": s.s2_requests, "load_before": loadavg(),
                           "warmup_errors": warmup(stack, wf1, s.warmup // 2) + warmup(stack, wf40, s.warmup // 2)}
    api = stack.api(s.request_timeout)
    lat = {"bench1": [], "bench40": []}
    errors = {"bench1": 0, "bench40": 0}
    client_pn, span_pn, gap_medians = [], [], []
    spans_all = {"bench1": [], "bench40": []}
    cpu_ms: dict[str, list[dict[str, float | None]]] = {"bench1": [], "bench40": []}
    try:
        for rep in range(s.reps):
            uuids: dict[str, list[str]] = {}
            for name, wf in (("bench1", wf1), ("bench40", wf40)):
                with CpuPerExec(stack) as cpu:
                    samples = sequential(lambda: wait_request(api, wf, keep_body=True), s.s2_requests,
                                         max_seconds=s.s2_requests * 5.0 + 30)
                cpu_ms[name].append(cpu.per_exec_ms(sum(1 for x in samples if x.ok)))
                errors[name] += sum(1 for x in samples if not x.ok)
                lat[name].append(ms(samples))
                uuids[name] = [x.body["data"]["uuid"] for x in samples if x.ok][-s.s2_engine_samples:]
            if not lat["bench1"][-1] or not lat["bench40"][-1]:
                ctx.log(f"  s2 rep {rep + 1}: no successful request ({errors})")
                continue
            p1, p40 = statistics.median(lat["bench1"][-1]), statistics.median(lat["bench40"][-1])
            client_pn.append((p40 - p1) / 39)
            span1, _ = engine_times(api, uuids["bench1"])
            span40, gaps = engine_times(api, uuids["bench40"])
            spans_all["bench1"] += span1
            spans_all["bench40"] += span40
            if span1 and span40:
                span_pn.append((statistics.median(span40) - statistics.median(span1)) / 39)
            if gaps:
                gap_medians.append(statistics.median(gaps))
            ctx.log(f"  s2 rep {rep + 1}: bench1 p50 {p1:.2f} ms, bench40 p50 {p40:.2f} ms, "
                    f"client per node {client_pn[-1]:.3f} ms, engine per node "
                    f"{span_pn[-1] if span_pn else float('nan'):.3f} ms")
    finally:
        api.close()
    out["bench1"] = across_reps(lat["bench1"])
    out["bench40"] = across_reps(lat["bench40"])
    out["errors"] = errors
    out["engine_span_ms"] = {k: across_reps([v]) for k, v in spans_all.items()}
    cpu_pn = [(b["total"] - a["total"]) / 39 for a, b in zip(cpu_ms["bench1"], cpu_ms["bench40"])
              if a.get("total") is not None and b.get("total") is not None]
    worker_pn = [(b["workers"] - a["workers"]) / 39 for a, b in zip(cpu_ms["bench1"], cpu_ms["bench40"])
                 if a.get("workers") is not None and b.get("workers") is not None]
    out["cpu_ms_per_exec"] = cpu_ms
    out["per_node"] = {"client": median_spread(client_pn), "engine_span": median_spread(span_pn),
                       "engine_gap": median_spread(gap_medians),
                       # CPU time (web + workers + embedded Redis) per node: hardly affected by other load
                       "cpu_all": median_spread(cpu_pn), "cpu_worker": median_spread(worker_pn)}
    out["load_after"] = loadavg()
    return out
