"""n8n, the peer of scenarios 1-3 and 8, driven with the scripts in ``shared/peers/n8n``.

The install lives in /tmp/n8n (``install.sh``, ~4 min, npm registry only). This module starts
n8n with ``start_n8n.sh`` (loopback, SQLite, regular mode), imports bench1 / bench5 / bench40
(webhook -> 1 / 5 / 40 Set nodes) with ``setup_n8n.py``, runs the same client loops as for
Athena against ``/webhook/<path>`` and stops it with ``stop_n8n.sh`` (by its pid file).

Scenario 8 (:func:`run_s8`): io1 / io5 (webhook -> HTTP Request v4.2 GET to the harness's instant
JSON service -> 0 / 3 Set nodes), generated here (:func:`http_io`) with the service's URL of the
run, imported and activated the same way; sequential ``lastNode`` webhooks and closed loops."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from bench.client import JsonPoster, Sample, closed_loop, sequential
from bench.procstats import cpu_seconds, rss_mb
from bench.report import across_reps, median_spread, r3, summarize
from bench.scenarios.common import BODY_BYTES, Settings
from bench.stack import port_open

ROOT = Path(__file__).resolve().parents[2]
N8N_HOME = Path("/tmp/n8n")
N8N_BIN = N8N_HOME / "node_modules" / "n8n" / "bin" / "n8n"
BASE = "http://127.0.0.1:5678"
CONFIGS = {"default": {}, "legacy": {"N8N_EXPRESSION_ENGINE": "legacy"}}


def peer_dir() -> Path | None:
    """shared/peers/n8n beside the clone (or /work/shared/peers/n8n)."""
    env = os.environ.get("ATHENA_BENCH_N8N_DIR")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "peers" / "n8n",
                                                     Path("/work/shared/peers/n8n")]:
        if (candidate / "start_n8n.sh").is_file():
            return candidate
    return None


def unavailable(install: bool, log: Callable[[str], None]) -> str | None:
    """Why n8n cannot be measured (None when it can); installs it first with ``install``."""
    scripts = peer_dir()
    if scripts is None:
        return "the n8n peer scripts (shared/peers/n8n) were not found"
    if not N8N_BIN.is_file():
        if not install:
            return ("n8n is not installed in /tmp/n8n: run `bash shared/peers/n8n/install.sh` (~4 min) "
                    "or pass --install-peers")
        log("[bench] installing n8n: bash install.sh (about 4 minutes)")
        done = subprocess.run(["bash", str(scripts / "install.sh")], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0 or not N8N_BIN.is_file():
            return f"n8n install failed: {done.stdout[-500:]} {done.stderr[-500:]}"
    if port_open(5678):
        return "something already listens on 127.0.0.1:5678 (another n8n?): stop it first"
    return None


def _set_node(path: str, i: int) -> dict[str, Any]:
    ns = uuid.UUID("6f1c2f7e-7f3b-4b7e-9a55-0b0b5e7c0001")
    return {"parameters": {"mode": "manual", "assignments": {"assignments": [
                {"id": str(uuid.uuid5(ns, f"{path}-a{i}")), "name": "step", "value": i, "type": "number"}]},
                "includeOtherFields": True, "options": {}},
            "id": str(uuid.uuid5(ns, f"{path}-set{i}")), "name": f"Set {i}", "type": "n8n-nodes-base.set",
            "typeVersion": 3.4, "position": [220 * i, 0]}


def chain(name: str, path: str, n_set: int) -> dict[str, Any]:
    """The same shape as shared/peers/n8n/make_workflows.py (bench1 and bench40 come from there)."""
    ns = uuid.UUID("6f1c2f7e-7f3b-4b7e-9a55-0b0b5e7c0001")
    hook = {"parameters": {"httpMethod": "POST", "path": path, "responseMode": "lastNode", "options": {}},
            "id": str(uuid.uuid5(ns, path + "-webhook")), "name": "Webhook", "type": "n8n-nodes-base.webhook",
            "typeVersion": 2, "position": [0, 0], "webhookId": str(uuid.uuid5(ns, path + "-webhookId"))}
    nodes = [hook] + [_set_node(path, i) for i in range(1, n_set + 1)]
    connections = {a["name"]: {"main": [[{"node": b["name"], "type": "main", "index": 0}]]}
                   for a, b in zip(nodes, nodes[1:])}
    return {"name": name, "nodes": nodes, "connections": connections, "settings": {"executionOrder": "v1"}}


def http_io(name: str, path: str, url: str, n_set: int) -> dict[str, Any]:
    """Webhook (POST /webhook/<path>, lastNode) -> HTTP Request (v4.2, GET ``url``, the response
    parsed as JSON by default) -> ``n_set`` Set nodes (as in :func:`chain`)."""
    ns = uuid.UUID("6f1c2f7e-7f3b-4b7e-9a55-0b0b5e7c0001")
    hook = {"parameters": {"httpMethod": "POST", "path": path, "responseMode": "lastNode", "options": {}},
            "id": str(uuid.uuid5(ns, path + "-webhook")), "name": "Webhook", "type": "n8n-nodes-base.webhook",
            "typeVersion": 2, "position": [0, 0], "webhookId": str(uuid.uuid5(ns, path + "-webhookId"))}
    call = {"parameters": {"url": url, "options": {"timeout": 10000}},
            "id": str(uuid.uuid5(ns, path + "-http")), "name": "HTTP Request", "type": "n8n-nodes-base.httpRequest",
            "typeVersion": 4.2, "position": [220, 0]}
    sets = [_set_node(path, i) for i in range(1, n_set + 1)]
    for i, node in enumerate(sets, start=2):
        node["position"] = [220 * i, 0]
    nodes = [hook, call, *sets]
    connections = {a["name"]: {"main": [[{"node": b["name"], "type": "main", "index": 0}]]}
                   for a, b in zip(nodes, nodes[1:])}
    return {"name": name, "nodes": nodes, "connections": connections, "settings": {"executionOrder": "v1"}}


_STARTED: list["N8n"] = []


def stop_started() -> None:
    for running in list(_STARTED):
        running.stop()


class N8n:
    def __init__(self, config: str, log: Callable[[str], None]) -> None:
        self.config = config
        self.scripts = peer_dir()
        self.log = log
        self.pid: int | None = None

    def start(self, workflows: dict[str, dict[str, Any]] | None = None) -> None:
        """Start n8n and import + activate ``workflows`` (file name -> JSON); by default the
        shared bench1 / bench40 and bench5."""
        assert self.scripts is not None
        env = dict(os.environ, **CONFIGS[self.config])
        # start_n8n.sh waits for "Editor is now accessible" in n8n.log, which the new process only
        # truncates once it runs: the previous start's log would pass at once ("up after 1s").
        (N8N_HOME / "n8n.log").unlink(missing_ok=True)
        done = subprocess.run(["bash", str(self.scripts / "start_n8n.sh")], env=env, capture_output=True, text=True,
                              timeout=240)
        if done.returncode != 0:
            raise RuntimeError(f"start_n8n.sh failed: {done.stdout[-800:]}")
        self.pid = int((N8N_HOME / "n8n.pid").read_text().strip())
        _STARTED.append(self)
        self.log(f"  n8n ({self.config}) up: {done.stdout.strip()}")
        try:
            self._import(workflows)
        except BaseException:
            self.stop()  # by its pid file: never leave a started n8n behind
            raise

    def _import(self, workflows: dict[str, dict[str, Any]] | None) -> None:
        assert self.scripts is not None
        with tempfile.TemporaryDirectory() as tmp:
            if workflows is None:
                for src in (self.scripts / "workflows").glob("*.json"):
                    (Path(tmp) / src.name).write_text(src.read_text())
                (Path(tmp) / "wf_bench5_chain.json").write_text(json.dumps(chain("bench5 webhook->5x set", "bench5",
                                                                                  5)))
            for file_name, workflow in (workflows or {}).items():
                (Path(tmp) / file_name).write_text(json.dumps(workflow))
            done = subprocess.run([sys.executable, str(self.scripts / "setup_n8n.py"), "--workflows",
                                   str(Path(tmp) / "*.json")], capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"setup_n8n.py failed: {done.stdout[-800:]} {done.stderr[-800:]}")
        time.sleep(3)  # webhooks registered

    def stop(self) -> None:
        if self in _STARTED:
            _STARTED.remove(self)
        if self.scripts is not None and self.pid is not None:
            subprocess.run(["bash", str(self.scripts / "stop_n8n.sh")], capture_output=True, text=True, timeout=60)

    def version(self) -> str:
        try:
            return json.loads((N8N_HOME / "node_modules" / "n8n" / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "?"


def _session(timeout: float) -> JsonPoster:
    """The same keep-alive poster as Athena's timed requests."""
    return JsonPoster(BASE, timeout=timeout)


def _call(session: JsonPoster, path: str) -> Sample:
    t0 = time.perf_counter()
    try:
        status, _ = session.post(path, BODY_BYTES)
        dt = time.perf_counter() - t0
        return Sample(dt, status == 200, None if status == 200 else f"HTTP {status}", None, t0)
    except Exception as exc:  # noqa: BLE001 - transport errors, counted
        return Sample(time.perf_counter() - t0, False, type(exc).__name__, None, t0)


def _sequential_reps(url: str, reps: int, count: int, timeout: float, warm: int) -> tuple[list[list[float]], int]:
    session = _session(timeout)
    try:
        for _ in range(warm):
            _call(session, url)
        out, errors = [], 0
        for _ in range(reps):
            samples = sequential(lambda: _call(session, url), count, max_seconds=count * 3.0 + 60)
            errors += sum(1 for s in samples if not s.ok)
            out.append([s.seconds * 1000 for s in samples if s.ok])
        return out, errors
    finally:
        session.close()


def run(settings: Settings, config: str, requests_s1: int, requests_s2: int,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    n8n = N8n(config, log)
    n8n.start()
    out: dict[str, Any] = {"config": config, "version": n8n.version(), "env_overrides": CONFIGS[config]}
    try:
        assert n8n.pid is not None
        out["rss_idle"] = rss_mb(n8n.pid)
        timeout = max(settings.request_timeout, 60.0)
        # Scenario 1
        reps, errors = _sequential_reps("/webhook/bench1", settings.reps, requests_s1, timeout, settings.warmup)
        out["s1"] = {"http_wait": across_reps(reps), "http_wait_errors": errors, "requests_per_rep": requests_s1}
        log(f"  n8n s1: p50 {out['s1']['http_wait']['p50_ms']} ms p99 {out['s1']['http_wait']['p99_ms']} ms")
        # Scenario 2
        r1, e1 = _sequential_reps("/webhook/bench1", settings.reps, requests_s2, timeout, settings.warmup // 2)
        r40, e40 = _sequential_reps("/webhook/bench40", settings.reps, requests_s2, timeout, settings.warmup // 2)
        per_node = [(statistics.median(b) - statistics.median(a)) / 39 for a, b in zip(r1, r40) if a and b]
        out["s2"] = {"bench1": across_reps(r1), "bench40": across_reps(r40), "errors": {"bench1": e1, "bench40": e40},
                     "per_node": {"client": median_spread(per_node)}, "requests_per_rep": requests_s2}
        log(f"  n8n s2: per node {out['s2']['per_node']['client']['median']} ms")
        # Scenario 3 (n8n is one process: no worker count)
        levels = []
        for path in ("bench1", "bench5"):
            url = f"/webhook/{path}"
            for clients in settings.s3_clients:
                def make():
                    session = _session(timeout)
                    return (lambda: _call(session, url)), session.close
                cpu0, wall0 = cpu_seconds(n8n.pid), time.perf_counter()
                result = closed_loop(make, clients, settings.s3_seconds)
                cpu1, wall1 = cpu_seconds(n8n.pid), time.perf_counter()
                ok = [s for s in result.samples if s.ok]
                width = settings.s3_seconds / settings.s3_windows
                counts = [0] * settings.s3_windows
                for s in ok:
                    index = int((s.started + s.seconds - result.t0) / width)
                    if 0 <= index < settings.s3_windows:
                        counts[index] += 1
                level = {"workflow": path, "workers": 1, "clients": clients, "completed": len(ok),
                         "errors": len(result.samples) - len(ok), "exec_per_s": r3(sum(counts) / settings.s3_seconds),
                         "window_exec_per_s": median_spread([c / width for c in counts]),
                         "latency": summarize(s.seconds * 1000 for s in ok),
                         "cpu": {"web_pct": r3(100 * (cpu1 - cpu0) / (wall1 - wall0)), "workers_pct": None},
                         "cpu_ms_per_exec": {"total": r3(1000 * (cpu1 - cpu0) / len(ok)) if ok else None}}
                levels.append(level)
                log(f"  n8n s3 {path} clients={clients}: {level['exec_per_s']} exec/s, errors {level['errors']}, "
                    f"p50 {level['latency'].get('p50_ms')} ms")
                time.sleep(1.0)
        out["s3"] = {"seconds": settings.s3_seconds, "windows": settings.s3_windows, "levels": levels}
        out["rss_after_s3"] = rss_mb(n8n.pid)
    finally:
        n8n.stop()
    return out


def _loop_level(pid: int, path: str, clients: int, seconds: float, windows: int, timeout: float) -> dict[str, Any]:
    url = f"/webhook/{path}"

    def make():
        session = _session(timeout)
        return (lambda: _call(session, url)), session.close

    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    result = closed_loop(make, clients, seconds)
    cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
    ok = [s for s in result.samples if s.ok]
    width = seconds / windows
    counts = [0] * windows
    for s in ok:
        index = int((s.started + s.seconds - result.t0) / width)
        if 0 <= index < windows:
            counts[index] += 1
    return {"workflow": path, "workers": 1, "clients": clients, "completed": len(ok),
            "errors": len(result.samples) - len(ok), "exec_per_s": r3(sum(counts) / seconds),
            "window_exec_per_s": median_spread([c / width for c in counts]),
            "latency": summarize(s.seconds * 1000 for s in ok),
            "cpu": {"web_pct": r3(100 * (cpu1 - cpu0) / (wall1 - wall0)), "workers_pct": None},
            "cpu_ms_per_exec": {"total": r3(1000 * (cpu1 - cpu0) / len(ok)) if ok else None}}


def run_s8(settings: Settings, config: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Scenario 8 on n8n: io1 / io5 against a fresh instant JSON service; (a) sequential
    ``reps`` x ``s8_requests`` and (c) closed loops at ``s8_peer_clients`` (n8n regular mode runs
    executions in its one process: no worker count)."""
    from bench.jsonserver import JsonServer

    timeout = max(settings.request_timeout, 60.0)
    with JsonServer() as target:
        workflows = {f"wf_{name}.json": http_io(f"{name} webhook->http{'->3x set' if sets else ''}", name,
                                                f"{target.base}/{name}", sets)
                     for name, sets in (("io1", 0), ("io5", 3))}
        n8n = N8n(config, log)
        n8n.start(workflows)
        out: dict[str, Any] = {"config": config, "version": n8n.version(), "env_overrides": CONFIGS[config],
                               "target": "bench.jsonserver (instant JSON, keep-alive)"}
        try:
            assert n8n.pid is not None
            served0 = target.served
            for name in ("io1", "io5"):
                cpu0 = cpu_seconds(n8n.pid)
                reps, errors = _sequential_reps(f"/webhook/{name}", settings.reps, settings.s8_requests, timeout,
                                                settings.warmup)
                done = sum(len(r) for r in reps)
                cpu_ms = r3(1000 * (cpu_seconds(n8n.pid) - cpu0) / (done + settings.warmup)) if done else None
                out[name] = {"http_wait": across_reps(reps), "http_wait_errors": errors,
                             "requests_per_rep": settings.s8_requests, "cpu_ms_per_exec": {"total": cpu_ms}}
                log(f"  n8n s8 {name}: p50 {out[name]['http_wait']['p50_ms']} ms "
                    f"p99 {out[name]['http_wait']['p99_ms']} ms, cpu/exec {cpu_ms} ms, errors {errors}")
            levels = []
            for name in ("io1", "io5"):
                for clients in settings.s8_peer_clients:
                    lv = _loop_level(n8n.pid, name, clients, settings.s8_seconds, settings.s3_windows, timeout)
                    levels.append(lv)
                    log(f"  n8n s8 {name} clients={clients}: {lv['exec_per_s']} exec/s, errors {lv['errors']}, "
                        f"p50 {lv['latency'].get('p50_ms')} ms p99 {lv['latency'].get('p99_ms')} ms")
                    time.sleep(1.0)
            out["closed_loop"] = {"level_seconds": settings.s8_seconds, "windows": settings.s3_windows,
                                  "levels": levels}
            out["target_calls"] = target.served - served0
            out["rss_after"] = rss_mb(n8n.pid)
        finally:
            n8n.stop()
    return out


def ratios_s8(athena: dict[str, Any], n8n: dict[str, Any]) -> list[dict[str, Any]]:
    """Scenario 8, Athena/n8n: sequential p50/p99 and closed-loop throughput (Athena in the make-run
    shape, 1 worker; and 2 workers at the peer's largest client count)."""
    rows: list[dict[str, Any]] = []

    def add(measure: str, a: float | None, b: float | None, better: str) -> None:
        rows.append({"scenario": "8", "measure": measure, "athena": a, "n8n": b,
                     "ratio": r3(a / b) if a is not None and b else None, "better": better})

    for name in ("io1", "io5"):
        a, b = (athena.get(name) or {}).get("http_wait", {}), (n8n.get(name) or {}).get("http_wait", {})
        add(f"{name} p50 ms, sequential ?wait=true", a.get("p50_ms"), b.get("p50_ms"), "lower")
        add(f"{name} p99 ms, sequential", a.get("p99_ms"), b.get("p99_ms"), "lower")
        add(f"{name} server CPU ms per execution, sequential (Athena: web + worker + Redis)",
            ((athena.get(name) or {}).get("cpu_ms_per_exec") or {}).get("total"),
            ((n8n.get(name) or {}).get("cpu_ms_per_exec") or {}).get("total"), "lower")
    peer = {(lv["workflow"], lv["clients"]): lv for lv in (n8n.get("closed_loop") or {}).get("levels", [])}
    for lv in (athena.get("closed_loop") or {}).get("levels", []):
        other = peer.get((lv["workflow"], lv["clients"]))
        if other is None:
            continue
        add(f"{lv['workflow']} exec/s, {lv['clients']} clients (Athena {lv['workers']} worker(s))",
            lv["exec_per_s"], other["exec_per_s"], "higher")
        if lv["workers"] == 1:
            add(f"{lv['workflow']} p99 ms, {lv['clients']} clients (Athena 1 worker)",
                lv["latency"].get("p99_ms"), other["latency"].get("p99_ms"), "lower")
    return rows


def ratios(athena: dict[str, Any], n8n: dict[str, Any]) -> list[dict[str, Any]]:
    """Athena/n8n for each comparable number (latency: lower is better; throughput: higher)."""
    rows: list[dict[str, Any]] = []

    def add(scenario: str, measure: str, a: float | None, b: float | None, better: str) -> None:
        rows.append({"scenario": scenario, "measure": measure, "athena": a, "n8n": b,
                     "ratio": r3(a / b) if a is not None and b else None, "better": better})

    a1, b1 = athena.get("s1", {}).get("http_wait", {}), n8n.get("s1", {}).get("http_wait", {})
    add("1", "p50 ms (webhook, wait for the result)", a1.get("p50_ms"), b1.get("p50_ms"), "lower")
    add("1", "p99 ms", a1.get("p99_ms"), b1.get("p99_ms"), "lower")
    a2, b2 = athena.get("s2", {}), n8n.get("s2", {})
    add("2", "per-node ms (client, (t40 − t1)/39)", a2.get("per_node", {}).get("client", {}).get("median"),
        b2.get("per_node", {}).get("client", {}).get("median"), "lower")
    add("2", "bench40 p50 ms", a2.get("bench40", {}).get("p50_ms"), b2.get("bench40", {}).get("p50_ms"), "lower")
    blevels = {(lv["workflow"], lv["clients"]): lv for lv in n8n.get("s3", {}).get("levels", [])}
    for lv in athena.get("s3", {}).get("levels", []):
        peer = blevels.get((lv["workflow"], lv["clients"]))
        if peer is None:
            continue
        add("3", f"{lv['workflow']} exec/s, {lv['clients']} clients (Athena {lv['workers']} worker(s))",
            lv["exec_per_s"], peer["exec_per_s"], "higher")
        if lv["workers"] == 2 and lv["clients"] == max(b["clients"] for b in blevels.values()):
            add("3", f"{lv['workflow']} server CPU ms per execution, {lv['clients']} clients (Athena: web + 2 "
                "workers + Redis; n8n: its process)", (lv.get("cpu_ms_per_exec") or {}).get("total"),
                (peer.get("cpu_ms_per_exec") or {}).get("total"), "lower")
    return rows
