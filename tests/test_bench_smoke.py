"""Smoke test of the benchmark harness: a --quick run of scenarios 1 and 2 on SQLite writes a
JSON with the expected shape. No timing thresholds: the numbers depend on the machine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_bench_run_writes_expected_json(tmp_path):
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--scenarios", "1,2", "--db", "sqlite", "--no-profile",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"meta", "targets", "runs", "verdicts"} <= set(result)
    assert {"machine", "versions", "settings", "started"} <= set(result["meta"])
    run = result["runs"]["sqlite"]
    assert run["scenarios"] == [1, 2]
    assert {"database", "redis", "threads", "workers"} <= set(run["stack"])
    s1 = run["s1"]
    for measure in ("http_wait", "websocket"):
        summary = s1[measure]
        assert {"p50_ms", "p95_ms", "p99_ms", "spread_p50_ms", "per_rep", "pooled"} <= set(summary)
        assert summary["reps"] == 2 and summary["pooled"]["n"] > 0
    assert s1["http_wait_errors"] == 0
    s2 = run["s2"]
    assert {"bench1", "bench40", "per_node", "errors"} <= set(s2)
    assert {"client", "engine_span", "engine_gap"} <= set(s2["per_node"])
    for key in ("client", "engine_span", "engine_gap"):
        assert s2["per_node"][key]["median"] is not None
    assert s2["errors"] == {"bench1": 0, "bench40": 0}
    assert out.with_suffix(".md").read_text().startswith("# Benchmark run")
    assert {v["scenario"] for v in result["verdicts"]} >= {"1", "2"}


# ---------------------------------------------------------------------------- scenario 8 (issue 16)
def test_scenario8_workflows_have_the_same_shape_on_both_sides():
    from bench.peers.n8n import http_io as n8n_http_io
    from bench.workflows import http_io

    for sets in (0, 3):
        nodes, edges = http_io("http://127.0.0.1:1/x", sets)
        assert [n["type"] for n in nodes] == ["webhook", "http_request"] + ["set"] * sets
        assert len(edges) == len(nodes) - 1
        peer = n8n_http_io("io", "io", "http://127.0.0.1:1/x", sets)
        assert [n["type"] for n in peer["nodes"]] == (["n8n-nodes-base.webhook", "n8n-nodes-base.httpRequest"]
                                                      + ["n8n-nodes-base.set"] * sets)
        assert peer["nodes"][0]["parameters"]["responseMode"] == "lastNode"
        assert peer["nodes"][1]["parameters"]["url"] == "http://127.0.0.1:1/x"
        assert len(peer["connections"]) == len(peer["nodes"]) - 1


def test_jsonserver_answers_at_once_on_one_keepalive_connection():
    import http.client

    from bench.jsonserver import JsonServer

    with JsonServer() as server:
        conn = http.client.HTTPConnection("127.0.0.1", int(server.base.rsplit(":", 1)[1]), timeout=5)
        try:
            for method, body in (("GET", None), ("POST", b'{"a": 1}'), ("GET", None)):
                conn.request(method, "/io1", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                assert response.status == 200
                assert json.loads(response.read())["ok"] is True
        finally:
            conn.close()
        assert server.served == 3


def test_scenario8_section_renders_from_a_minimal_result():
    from bench import report

    summary = {"reps": 1, "pooled": {"n": 1}, "p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "spread_p50_ms": [1.0, 1.0]}
    level = {"workflow": "io1", "workers": 1, "clients": 8, "exec_per_s": 10.0,
             "window_exec_per_s": {"spread": [9.0, 11.0]}, "errors": 0, "latency": {"p50_ms": 1.0, "p99_ms": 2.0}}
    s8 = {"shape": {"web_processes": 1, "threads": 16}, "io1": {"http_wait": summary, "websocket_queued": summary},
          "counts_io1": {"executions": 5, "redis_commands_per_exec": 100.0, "redis_by_command": {"xadd": 10.0},
                         "redis_idle_per_s": 1.0, "sql_statements_per_exec": 12.0, "sql_by_kind": {"stmt:SELECT": 5.0}},
          "closed_loop": {"level_seconds": 2.0, "windows": 2, "levels": [level]}}
    text = report.render_markdown({"meta": {}, "runs": {"sqlite": {"s8": s8}}})
    assert "### 8. The queued path with I/O" in text
    assert "100.0 Redis" in text and "12.0 statements" in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_scenario8_run_writes_expected_json(tmp_path):
    out = tmp_path / "quick8.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--scenarios", "8", "--db", "sqlite", "--no-profile",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    s8 = json.loads(out.read_text())["runs"]["sqlite"]["s8"]
    assert "failed" not in s8, s8.get("failed")
    assert s8["shape"]["web_processes"] == 1
    for name in ("io1", "io5"):
        assert s8[name]["http_wait_errors"] == 0 and s8[name]["http_wait"]["pooled"]["n"] > 0
        assert s8[name]["websocket_queued_errors"] == 0
    assert s8["target_calls"]["served"] == s8["target_calls"]["completed_executions"]
    assert s8["counts_io1"]["redis_commands_per_exec"] > 0
    assert {(lv["workflow"], lv["workers"]) for lv in s8["closed_loop"]["levels"]} == {
        (w, n) for w in ("io1", "io5") for n in (1, 2)}
    assert all(lv["errors"] == 0 for lv in s8["closed_loop"]["levels"])
