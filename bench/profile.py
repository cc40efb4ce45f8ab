"""Profiles of scenarios 2 and 3 with py-spy (sampling, from outside: no app code changes).

py-spy comes from ``bench/requirements.txt``, installed into the running venv on first use.
Workers are recorded with ``--idle`` (a job's wall time, waits on SQLite/PostgreSQL/Redis
included; only the main thread, which runs the jobs), the gunicorn worker without it (where
the web process spends CPU). Raw (collapsed) stacks are kept under ``bench/results/profiles/``
and summarised: inclusive and self share per function, and a bucket per library."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.report import r3

ROOT = Path(__file__).resolve().parent.parent

# Leaf-most frame that matches decides the bucket of a sample.
BUCKETS: list[tuple[str, Callable[[str, str], bool]]] = [
    ("DB driver: execute/commit (SQLite C code or PostgreSQL round trip)",
     lambda fn, f: fn.rsplit(".", 1)[-1] in ("do_execute", "do_commit", "do_executemany", "do_rollback",
                                              "do_execute_no_params") or f.startswith(("psycopg/", "sqlite3/"))),
    ("Redis client (incl. waiting for Redis)", lambda fn, f: f.startswith("redis/")),
    ("SQLAlchemy (Python)", lambda fn, f: f.startswith("sqlalchemy/") or f.startswith("flask_sqlalchemy/")),
    ("marshmallow / flask-smorest / webargs", lambda fn, f: f.startswith(("marshmallow/", "flask_smorest/", "webargs/",
                                                                          "apispec/"))),
    ("json", lambda fn, f: f.startswith("json/")),
    ("logging", lambda fn, f: f.startswith("logging/")),
    ("Jinja2 (expressions)", lambda fn, f: f.startswith("jinja2/")),
    ("RQ", lambda fn, f: f.startswith("rq/")),
    ("Flask / Werkzeug / gunicorn / requests-side HTTP", lambda fn, f: f.startswith(("flask/", "werkzeug/", "gunicorn/",
                                                                                     "flask_sock/", "simple_websocket/"))),
    ("athena + jobs (own code)", lambda fn, f: f.startswith(("athena/", "jobs/"))),
]


def _venv_bin(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def ensure_pyspy(log: Callable[[str], None] = print) -> tuple[str | None, str | None]:
    """(path of py-spy, None) or (None, why not). Installs bench/requirements.txt on first use."""
    found = _venv_bin("py-spy")
    if found:
        return found, None
    log("[bench] py-spy not found: pip install -r bench/requirements.txt (into the venv)")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "-r", str(ROOT / "bench" / "requirements.txt")], capture_output=True, text=True)
    found = _venv_bin("py-spy")
    if found:
        return found, None
    return None, f"py-spy could not be installed: {done.stderr.strip()[-300:]}"


class Recording:
    """``py-spy record`` of one pid in the background (raw collapsed stacks)."""

    def __init__(self, pyspy: str, pid: int, out: Path, seconds: float, idle: bool, rate: int = 100,
                 gil: bool = False) -> None:
        self.out = out
        args = [pyspy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
                "--format", "raw", "--output", str(out), "--threads", "--nolineno", "--nonblocking"]
        if idle:
            args.append("--idle")
        if gil:
            args.append("--gil")  # only samples holding the GIL: where Python burns CPU
        out.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout: float) -> str:
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            output, _ = self.process.communicate(timeout=10)
        return output or ""


def parse_raw(paths: Iterable[Path]) -> list[tuple[str, list[str], int]]:
    """(thread label, frames root..leaf, count) of every line of py-spy raw files."""
    out = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            parts = stack.split(";")
            out.append((parts[0], parts[1:], int(count)))
    return out


def _split(frame: str) -> tuple[str, str]:
    name, _, rest = frame.rpartition(" (")
    return (name or frame), rest.rstrip(")")


# The common trunk of every sample (entry points, loops, decorators): left out of the tables.
TRUNK = ("<frozen runpy>", "threading.py", "concurrent/futures/", "rq/worker/", "jobs/worker.py", "gunicorn/",
         "flask/app.py", "flask/views.py", "flask_smorest/", "webargs/core.py", "Job.perform (", "Job._execute (",
         "run_execution (jobs/run_execution.py)", "login_required.<locals>.wrapper")


def summarize(samples: list[tuple[str, list[str], int]], keep: Callable[[str, list[str]], bool] = lambda t, f: True,
              top: int = 25) -> dict[str, Any]:
    kept = [(t, frames, n) for t, frames, n in samples if keep(t, frames)]
    total = sum(n for _, _, n in kept)
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    for _thread, frames, n in kept:
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            leaf[frames[-1]] += n
        bucket = "other (stdlib, C extensions, ...)"
        for frame in reversed(frames):
            fn, file = _split(frame)
            match = next((name for name, rule in BUCKETS if rule(fn, file)), None)
            if match:
                bucket = match
                break
        buckets[bucket] += n

    def share(counter: Counter[str], skip_trunk: bool = False) -> list[dict[str, Any]]:
        items = [(k, v) for k, v in counter.most_common()
                 if not (skip_trunk and any(t in k for t in TRUNK))][:top]
        return [{"function": k, "samples": v, "share_pct": r3(100.0 * v / total) if total else None}
                for k, v in items]

    return {"samples": total, "top_total": share(inclusive, skip_trunk=True), "top_self": share(leaf),
            "buckets": {k: r3(100.0 * v / total) for k, v in buckets.most_common()} if total else {}}


def _has(frames: list[str], needle: str) -> bool:
    return any(needle in frame for frame in frames)


def worker_jobs(thread: str, frames: list[str]) -> bool:
    """Samples of a worker's main thread while it runs a job."""
    return "MainThread" in thread and _has(frames, "perform_job")


def web_on_cpu(thread: str, frames: list[str]) -> bool:
    """Web samples minus blocking reads of the event log (a ``?wait=true`` request waiting for the
    worker, the WebSocket hub's XREAD: older recordings without ``--gil`` count those as active)."""
    return not (frames and "_read_from_socket" in frames[-1]
                and (_has(frames, "EventLog.wait_after") or _has(frames, "Hub._xread")))


def worker_main(thread: str, frames: list[str]) -> bool:
    return "MainThread" in thread


def profile_phase(pyspy: str, name: str, what: str, stack, seconds: float, load: Callable[[], Any],
                  out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Record every worker (idle included) and the gunicorn worker (CPU only) while ``load`` runs."""
    worker_files = [out_dir / f"{name}-worker{i + 1}.raw" for i in range(len(stack.worker_pids()))]
    web_file = out_dir / f"{name}-web.raw"
    recs = [Recording(pyspy, pid, path, seconds, idle=True) for pid, path in zip(stack.worker_pids(), worker_files)]
    recs += [Recording(pyspy, pid, web_file, seconds, idle=False, gil=True) for pid in stack.web_worker_pids()[:1]]
    time.sleep(0.5)  # py-spy attaches
    started = time.monotonic()
    load_result = load()
    for rec in recs:
        rec.wait(timeout=seconds + 60 - (time.monotonic() - started))
    main = parse_raw(worker_files)
    main_total = sum(n for t, f, n in main if worker_main(t, f))
    job_total = sum(n for t, f, n in main if worker_jobs(t, f))
    result = {
        "what": what,
        "load": load_result,
        "worker_jobs": {**summarize(main, worker_jobs), "what": f"{what}: worker main thread while running a job "
                        "(wall time, idle included)", "raw": [str(p.relative_to(ROOT)) for p in worker_files]},
        "worker_busy_pct": r3(100.0 * job_total / main_total) if main_total else None,
        "web_cpu": {**summarize(parse_raw([web_file]), web_on_cpu), "what": f"{what}: gunicorn worker, samples "
                    "holding the GIL (Python on CPU), all threads",
                    "raw": str(web_file.relative_to(ROOT))},
    }
    log(f"  profile {name}: worker job samples {result['worker_jobs']['samples']}, busy "
        f"{result['worker_busy_pct']} %, web samples {result['web_cpu']['samples']}")
    return result


def resummarize(result_json: Path) -> None:
    """Recompute the profile summaries of a results JSON from its raw files (and its markdown)."""
    import json

    from bench import report

    result = json.loads(result_json.read_text())
    for section, phase in (("profile", "s2"), ("profile", "s3"), ("profile_s8", "s8_seq"), ("profile_s8", "s8_loop")):
        ph = (result.get(section) or {}).get(phase)
        if not isinstance(ph, dict):
            continue
        files = [ROOT / p for p in ph["worker_jobs"]["raw"]]
        main = parse_raw(files)
        ph["worker_jobs"].update(summarize(main, worker_jobs))
        web = ROOT / ph["web_cpu"]["raw"]
        ph["web_cpu"].update(summarize(parse_raw([web]), web_on_cpu))
    report.write_json(result_json, result)
    result_json.with_suffix(".md").write_text(report.render_markdown(result))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        resummarize(Path(arg))
        print(f"re-summarised {arg}")
