"""Statistics (percentiles, medians across repetitions, spread) and the JSON + markdown output."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Iterable

# The targets of the "Benchmarks" issue (2-core machine).
TARGETS = {
    "s1": {"p50_ms": 15.0, "p99_ms": 50.0},
    "s2": {"per_node_p50_ms": {"sqlite": 2.0, "postgres": 3.0}},
    "s3": {"exec_per_s_1node_2workers": 200.0, "errors_at_64": 0},
    "s4": {"p50_ms": 5.0, "p99_ms": 25.0, "lost": 0, "duplicated": 0, "clients": 100},
    "s5": {"p99_ms": 500.0},
    "s6": {"p95_ms": 50.0},
    "s7": {"rss_mb": 150.0},
}


def pct(sorted_values: list[float], p: float) -> float | None:
    """Linear-interpolated percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * (p / 100.0)
    lo = int(math.floor(k))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(values_ms: Iterable[float]) -> dict[str, Any]:
    v = sorted(values_ms)
    if not v:
        return {"n": 0}
    return {"n": len(v), "mean_ms": r3(statistics.fmean(v)), "min_ms": r3(v[0]),
            "p50_ms": r3(pct(v, 50)), "p95_ms": r3(pct(v, 95)), "p99_ms": r3(pct(v, 99)),
            "max_ms": r3(v[-1])}


def across_reps(reps: list[list[float]]) -> dict[str, Any]:
    """Per-repetition summaries, the median of each percentile across repetitions, the spread
    (min..max across repetitions) and the pooled percentiles of every sample."""
    per_rep = [summarize(rep) for rep in reps]
    valid = [s for s in per_rep if s.get("n")]
    out: dict[str, Any] = {"reps": len(reps), "per_rep": per_rep,
                           "pooled": summarize(x for rep in reps for x in rep)}
    for key in ("p50_ms", "p95_ms", "p99_ms", "mean_ms"):
        values = [s[key] for s in valid]
        out[key] = r3(statistics.median(values)) if values else None
        out[f"spread_{key}"] = [r3(min(values)), r3(max(values))] if values else None
    return out


def median_spread(values: list[float]) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "spread": None, "values": []}
    return {"median": r3(statistics.median(values)), "spread": [r3(min(values)), r3(max(values))],
            "values": [r3(v) for v in values]}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------- markdown
def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


def _spread(pair: list[float] | None, digits: int = 1) -> str:
    return "–" if not pair else f"{_f(pair[0], digits)}–{_f(pair[1], digits)}"


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("✅" if ok else "❌ miss")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(result: dict[str, Any]) -> str:
    meta = result.get("meta", {})
    out = [f"# Benchmark run {meta.get('label', '')} ({meta.get('started', '')})", ""]
    out.append(table(["item", "value"], [[k, v] for k, v in meta.get("machine", {}).items()]
                     + [[k, v] for k, v in meta.get("versions", {}).items()]
                     + [[k, v] for k, v in meta.get("settings", {}).items()]))
    out.append("")
    for db_name, run in result.get("runs", {}).items():
        out.append(f"## Athena on {db_name}")
        out.append("")
        out += _render_run(db_name, run)
    peers = result.get("peers")
    if peers:
        out.append("## Side by side with n8n")
        out.append("")
        out += _render_peers(peers)
    prof = result.get("profile")
    if prof:
        out.append("## Profile (py-spy)")
        out.append("")
        out += _render_profile(prof)
    prof8 = result.get("profile_s8")
    if prof8:
        out.append("## Scenario 8: counts and profile of io1 (own stack, make-run shape, SQL counter loaded)")
        out.append("")
        if prof8.get("failed"):
            out += [f"failed: {prof8['failed']}", ""]
        out += render_counts(prof8.get("counts_io1"))
        out += _render_profile(prof8, ("s8_seq", "s8_loop"))
    return "\n".join(out) + "\n"


def _noise(section: dict[str, Any] | None) -> str:
    share = (section or {}).get("cpu_share")
    if not share:
        return ""
    return (f"Machine during this scenario: CPUs {share['system_busy_pct']:.0f} % busy (100 % = one core), "
            f"of which {share['foreign_pct']:.0f} % by processes other than this benchmark's.")


def _render_run(db_name: str, run: dict[str, Any]) -> list[str]:
    out: list[str] = []
    stack = run.get("stack")
    if stack:
        out.append(f"Stack: {stack.get('database')}, Redis {stack.get('redis')}, gunicorn gthread "
                   f"{stack.get('web_workers', 1)} x {stack.get('threads')} threads, "
                   f"`python -m jobs.worker` x {stack.get('workers')}.")
        out.append("")
    s1 = run.get("s1")
    if s1:
        rows = []
        for name, label in (("http_wait", "webhook ?wait=true (HTTP answer)"),
                            ("websocket", "webhook ?wait=true, execution.finished on the workspace WebSocket"),
                            ("websocket_queued", "webhook (202, through the queue), execution.finished on the "
                                                 "workspace WebSocket")):
            m = s1.get(name)
            if not m:
                continue
            ok = None
            if m.get("p50_ms") is not None:
                ok = m["p50_ms"] <= TARGETS["s1"]["p50_ms"] and m["p99_ms"] <= TARGETS["s1"]["p99_ms"]
            rows.append([label, m["reps"], m["pooled"]["n"], _f(m["p50_ms"]), _f(m["p95_ms"]), _f(m["p99_ms"]),
                         _spread(m["spread_p50_ms"]), _spread(m["spread_p99_ms"]), s1.get(f"{name}_errors", 0),
                         _verdict(ok)])
        cpu = s1.get("cpu_ms_per_exec")
        split = s1.get("server_split_p50_ms") or {}
        out.append("### 1. Trigger to completion, 1-node workflow (sequential)")
        out.append("")
        if _noise(s1):
            out += [_noise(s1), ""]
        out.append(table(["measure", "reps", "n", "p50 ms", "p95 ms", "p99 ms", "p50 spread", "p99 spread",
                          "errors", "target p50 ≤ 15, p99 ≤ 50"], rows))
        out.append("")
        if cpu:
            out.append(f"CPU per execution (HTTP runs): web {_f(cpu.get('web'))} ms, worker {_f(cpu.get('workers'))} ms, "
                       f"embedded Redis {_f(cpu.get('redis'))} ms (total {_f(cpu.get('total'))} ms). Server-side p50: "
                       f"created → started {_f(split.get('created_to_started'))} ms, started → stopped "
                       f"{_f(split.get('started_to_stopped'))} ms.")
            out.append("")
    s2 = run.get("s2")
    if s2:
        target = TARGETS["s2"]["per_node_p50_ms"].get(db_name)
        rows = []
        for key, label in (("client", "client (HTTP wait=true): (t40 − t1)/39"),
                           ("engine_span", "engine timestamps: (span40 − span1)/39"),
                           ("engine_gap", "engine timestamps: start-to-start gap in the chain"),
                           ("cpu_all", "CPU time per node, web + worker + Redis (hardly load-dependent)"),
                           ("cpu_worker", "CPU time per node, worker only")):
            m = s2.get("per_node", {}).get(key)
            if not m:
                continue
            ok = None if m.get("median") is None or target is None or key.startswith("cpu") else m["median"] <= target
            rows.append([label, _f(m["median"], 2), _spread(m["spread"], 2), _verdict(ok)])
        out.append("### 2. Per-node overhead (40 set nodes vs 1)")
        out.append("")
        if _noise(s2):
            out += [_noise(s2), ""]
        out.append(f"bench1 p50 {_f(s2['bench1']['p50_ms'])} ms, bench40 p50 {_f(s2['bench40']['p50_ms'])} ms "
                   f"(p99 {_f(s2['bench1']['p99_ms'])} / {_f(s2['bench40']['p99_ms'])} ms), "
                   f"{s2['bench40']['reps']} reps x {s2.get('requests_per_rep')} requests.")
        out.append("")
        out.append(table(["measure", "ms per node (median of reps)", "spread", f"target ≤ {target}"], rows))
        out.append("")
    s3 = run.get("s3")
    if s3:
        rows = []
        for level in s3.get("levels", []):
            ok = None
            if level["workflow"] == "bench1" and level["workers"] == 2 and level["clients"] == 64:
                ok = (level["exec_per_s"] or 0) >= TARGETS["s3"]["exec_per_s_1node_2workers"] and level["errors"] == 0
            rows.append([level["workflow"], level["workers"], level["clients"], _f(level["exec_per_s"]),
                         _spread(level["window_exec_per_s"]["spread"]), level["errors"], _f(level["latency"]["p50_ms"]),
                         _f(level["latency"]["p99_ms"]), _f(level.get("cpu", {}).get("web_pct"), 0),
                         _f(level.get("cpu", {}).get("workers_pct"), 0),
                         _f((level.get("cpu_ms_per_exec") or {}).get("total")),
                         _f(level.get("foreign_cpu_pct"), 0), _verdict(ok)])
        out.append(f"### 3. Throughput, closed loop ({s3.get('level_seconds') or (s3.get('levels') or [{}])[0].get('seconds')} s per level, "
                   f"{s3.get('windows')} windows = repetitions)")
        out.append("")
        if _noise(s3):
            out += [_noise(s3), ""]
        out.append(table(["workflow", "workers", "clients", "exec/s", "exec/s spread (windows)", "errors",
                          "p50 ms", "p99 ms", "web CPU %", "workers CPU %", "CPU ms/exec (web+workers+Redis)",
                          "other processes CPU %", "target ≥ 200/s, 0 errors @64"], rows))
        out.append("")
    s4 = run.get("s4")
    if s4:
        rows = []
        for level in s4.get("levels", []):
            m = level["latency"]
            ok = None
            if level["clients"] == TARGETS["s4"]["clients"] and m.get("p50_ms") is not None:
                ok = (m["p50_ms"] <= TARGETS["s4"]["p50_ms"] and m["p99_ms"] <= TARGETS["s4"]["p99_ms"]
                      and level["lost"] == 0 and level["duplicated"] == 0)
            rows.append([level["clients"], level["executions"], level["events_expected"], _f(m["p50_ms"]),
                         _f(m["p95_ms"]), _f(m["p99_ms"]), _spread(m["spread_p50_ms"]), level["lost"],
                         level["duplicated"], level["out_of_order"], _verdict(ok)])
        out.append("### 4. WebSocket fan-out (workspace channel; event `ts` → client receipt)")
        out.append("")
        if _noise(s4):
            out += [_noise(s4), ""]
        out.append(table(["clients", "executions", "events expected (all clients)", "p50 ms", "p95 ms", "p99 ms",
                          "p50 spread", "lost", "duplicated", "out of order", "target @100: p50 ≤ 5, p99 ≤ 25, 0/0"],
                         rows))
        out.append("")
    s5 = run.get("s5")
    if s5:
        rows = []
        for case in s5.get("cases", []):
            api, fin = case["api"], case["finished"]
            ok = None if fin.get("p99_ms") is None else fin["p99_ms"] <= TARGETS["s5"]["p99_ms"]
            rows.append([case["case"], fin.get("n", 0), _f(api.get("p50_ms")), _f(api.get("p99_ms")),
                         _f(fin.get("p50_ms")), _f(fin.get("p99_ms")), _f(fin.get("max_ms")), case.get("errors", 0),
                         _verdict(ok)])
        out.append("### 5. Stop latency")
        out.append("")
        if _noise(s5):
            out += [_noise(s5), ""]
        out.append(table(["case", "stops", "stop API p50 ms (status cancelled)", "stop API p99 ms",
                          "node stopped p50 ms (execution.finished ts)", "node stopped p99 ms", "max ms", "errors",
                          "target p99 ≤ 500"], rows))
        out.append("")
    s6 = run.get("s6")
    if s6:
        rows = []
        for q in s6.get("queries", []):
            m = q["latency"]
            ok = None if m.get("p95_ms") is None else m["p95_ms"] <= TARGETS["s6"]["p95_ms"]
            rows.append([q["name"], m["pooled"]["n"], _f(m["p50_ms"]), _f(m["p95_ms"]), _f(m["p99_ms"]),
                         _spread(m["spread_p95_ms"]), q.get("errors", 0), _verdict(ok)])
        out.append(f"### 6. Read path ({s6.get('executions')} executions, {s6.get('workflows')} workflows; "
                   f"seeded in {_f(s6.get('seed_seconds'))} s)")
        out.append("")
        if _noise(s6):
            out += [_noise(s6), ""]
        out.append(table(["query", "n", "p50 ms", "p95 ms", "p99 ms", "p95 spread", "errors", "target p95 ≤ 50"],
                         rows))
        out.append("")
    s8 = run.get("s8")
    if s8:
        out += _render_s8(s8)
    s7 = run.get("s7")
    if s7:
        rows = []
        for phase, procs in s7.items():
            if not isinstance(procs, dict):
                continue
            for role in ("web_master", "web_worker", "worker"):
                if role in procs:
                    p = procs[role]
                    ok = None if role == "web_master" else p["rss_mb"] <= TARGETS["s7"]["rss_mb"]
                    rows.append([phase, role, _f(p["rss_mb"]), _f(p.get("hwm_mb")), p.get("count", 1), _verdict(ok)])
        out.append("### 7. Memory (RSS; worker = the largest worker process)")
        out.append("")
        out.append(table(["when", "process", "RSS MB", "VmHWM MB", "processes", "target ≤ 150 MB"], rows))
        out.append("")
    return out


def render_counts(c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    top = ", ".join(f"{k} {_f(v, 2)}" for k, v in list((c.get("redis_by_command") or {}).items())[:12])
    out = [f"Per io1 execution ({c.get('executions')} sequential `?wait=true`, minus the idle baseline of "
           f"{_f(c.get('redis_idle_per_s'), 1)} commands/s): **{_f(c.get('redis_commands_per_exec'), 1)} Redis "
           f"commands** ({top}).", ""]
    if c.get("sql_statements_per_exec") is not None:
        kinds = ", ".join(f"{k} {_f(v, 2)}" for k, v in (c.get("sql_by_kind") or {}).items())
        procs = ", ".join(f"{k} {_f(v, 2)}" for k, v in (c.get("sql_by_process") or {}).items())
        out += [f"SQL per io1 execution: **{_f(c.get('sql_statements_per_exec'), 1)} statements** through "
                f"SQLAlchemy, {_f(c.get('sqlite_statements_per_exec'), 1)} as sqlite3 runs them (BEGIN/COMMIT "
                f"included), {_f(c.get('sql_commits_per_exec'), 1)} commits; by process: {procs}; by kind: {kinds}.",
                ""]
    elif c.get("sql"):
        out += [f"SQL: {c['sql']}.", ""]
    return out


def _render_s8(s8: dict[str, Any]) -> list[str]:
    out = ["### 8. The queued path with I/O (webhook -> http_request [-> 3 set] -> answer; a loopback JSON "
           "service)", ""]
    if s8.get("failed"):
        return out + [f"failed: {s8['failed']}", ""]
    shape = s8.get("shape") or {}
    out.append(f"Shape: {shape.get('web_processes')} gunicorn process x {shape.get('threads')} threads "
               "(the `make run` shape), 1 RQ worker for the sequential rows.")
    out.append("")
    if _noise(s8):
        out += [_noise(s8), ""]
    rows = []
    for name in ("io1", "io5"):
        part = s8.get(name) or {}
        split = part.get("server_split_p50_ms") or {}
        cpu = part.get("cpu_ms_per_exec") or {}
        for key, label in (("http_wait", "?wait=true (HTTP answer)"),
                           ("websocket_queued", "202, execution.finished on the workspace WebSocket")):
            m = part.get(key)
            if not m:
                continue
            rows.append([name, label, m["pooled"]["n"], _f(m["p50_ms"]), _f(m["p95_ms"]), _f(m["p99_ms"]),
                         _spread(m["spread_p50_ms"]), part.get(f"{key}_errors", 0),
                         f"{_f(split.get('created_to_started'))} / {_f(split.get('started_to_stopped'))}"
                         if key == "http_wait" else "",
                         f"{_f(cpu.get('web'))} / {_f(cpu.get('workers'))} / {_f(cpu.get('redis'))}"
                         if key == "http_wait" else ""])
    out.append(table(["workflow", "measure", "n", "p50 ms", "p95 ms", "p99 ms", "p50 spread (reps)", "errors",
                      "server p50 created→started / started→stopped ms", "CPU ms/exec web / worker / Redis"], rows))
    out.append("")
    calls = s8.get("target_calls") or {}
    if calls:
        out += [f"The JSON service answered {calls.get('served')} calls for {calls.get('completed_executions')} "
                "completed executions of the sequential rows.", ""]
    out += render_counts(s8.get("counts_io1"))
    loop = s8.get("closed_loop") or {}
    rows = []
    for lv in loop.get("levels", []):
        rows.append([lv["workflow"], lv["workers"], lv["clients"], _f(lv["exec_per_s"]),
                     _spread(lv["window_exec_per_s"]["spread"]), lv["errors"], _f(lv["latency"].get("p50_ms")),
                     _f(lv["latency"].get("p99_ms")), _f(lv.get("cpu", {}).get("web_pct"), 0),
                     _f(lv.get("cpu", {}).get("workers_pct"), 0), _f((lv.get("cpu_ms_per_exec") or {}).get("total")),
                     _f(lv.get("foreign_cpu_pct"), 0)])
    if rows:
        out.append(f"Closed loop `?wait=true` ({loop.get('level_seconds')} s per level, {loop.get('windows')} "
                   "windows):")
        out.append("")
        out.append(table(["workflow", "workers", "clients", "exec/s", "exec/s spread (windows)", "errors", "p50 ms",
                          "p99 ms", "web CPU %", "workers CPU %", "CPU ms/exec (web+workers+Redis)",
                          "other processes CPU %"], rows))
        out.append("")
    return out


def _render_peers(peers: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if peers.get("skipped"):
        return [f"n8n skipped: {peers['skipped']}", ""]
    for config_name, n8n in peers.get("n8n", {}).items():
        out.append(f"n8n config `{config_name}` ({n8n.get('version', '')}):")
        out.append("")
        rows = [[r["scenario"], r["measure"], _f(r["athena"], 2), _f(r["n8n"], 2), _f(r["ratio"], 3), r["better"]]
                for r in n8n.get("ratios", [])]
        out.append(table(["scenario", "measure", "Athena", "n8n", "Athena/n8n", "better is"], rows))
        out.append("")
    return out


def _render_profile(prof: dict[str, Any], phases: tuple[str, ...] = ("s2", "s3")) -> list[str]:
    out: list[str] = []
    if prof.get("skipped") or prof.get("failed"):
        return [f"profile skipped: {prof.get('skipped') or prof.get('failed')}", ""]
    for phase in phases:
        ph = prof.get(phase)
        if not isinstance(ph, dict):
            continue
        out.append(f"### {ph.get('what', phase)}")
        out.append("")
        out.append(f"Load: {ph.get('load')}; worker main thread busy with jobs {_f(ph.get('worker_busy_pct'))} % "
                   "of its samples.")
        out.append("")
        for part in ("worker_jobs", "web_cpu"):
            p = ph.get(part)
            if not isinstance(p, dict) or not p.get("samples"):
                continue
            out.append(f"**{p.get('what', part)}** — {p['samples']} samples (raw: `{p.get('raw')}`)")
            out.append("")
            rows = [[i + 1, f"`{t['function']}`", _f(t["share_pct"], 1)] for i, t in enumerate(p["top_total"][:20])]
            out.append(table(["#", "function (file) — inclusive", "% of samples"], rows))
            out.append("")
            rows = [[i + 1, f"`{t['function']}`", _f(t["share_pct"], 1)] for i, t in enumerate(p["top_self"][:12])]
            out.append(table(["#", "function (file) — self", "% of samples"], rows))
            out.append("")
            rows = [[k, _f(v, 1)] for k, v in p.get("buckets", {}).items()]
            out.append(table(["bucket (leaf-most library frame)", "% of samples"], rows))
            out.append("")
    return out
