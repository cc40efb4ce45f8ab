"""The verdicts of a benchmark run: each measured value next to its target
(``report.TARGETS``), met or missed, as listed at the end of a run and in its results."""
from __future__ import annotations

from typing import Any

from bench import report


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
