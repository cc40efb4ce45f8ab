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
