"""Athena benchmarks: ``python -m bench.run`` (``make bench``; ``make bench-peers`` adds n8n).

    python -m bench.run                               # scenarios 1-8 on SQLite, 1,2,3,7 on PostgreSQL
    python -m bench.run --scenarios 1,2,3 --db sqlite
    python -m bench.run --quick --scenarios 1,2 --db sqlite   # smoke run (seconds)
    python -m bench.run --peers                       # scenarios 1-3: Athena (SQLite) and n8n, ratios
    python -m bench.run --profile-only                # only the py-spy profiles of scenarios 2/3
    python -m bench.run --scenarios 8 --db sqlite     # the queued path with I/O (issue 16)
    python -m bench.run --scenarios 8 --peers --n8n-config legacy   # ... side by side with n8n
    python -m bench.run --scenarios 8 --db sqlite --profile  # + Redis/SQL counts and py-spy of io1
    python -m bench.run --scenarios 8 --profile-only  # only those counts and profiles (~1 min)
    python -m bench.run --nice -10 --wait-quiet 120   # on a shared machine

Each database gets its own isolated stack (bench/stack.py): SQLite + embedded Redis, or a fresh
PostgreSQL database + DB index 12 of the server Redis. Results: ``--out`` (default
``bench/results/<date>-<label>.json``) and a markdown rendering next to it. All traffic goes
to 127.0.0.1; every loop is bounded in count and time. See BENCHMARKS.md."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import report
from bench.environment import machine, postgres_unavailable, versions
from bench.orchestration import _guard, log, run_database, run_peers, run_profiles, run_s8_profile
from bench.scenarios.common import Settings, loadavg
from bench.stack import DEFAULT_PG, DEFAULT_SERVER_REDIS, ROOT
from bench.verdicts import verdicts

ALL = (1, 2, 3, 4, 5, 6, 7, 8)
PG_DEFAULT_SCENARIOS = (1, 2, 3, 7)


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=None, help="comma list of 1-8 (default: all; with --peers: 1,2,3)")
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default=None,
                   help="default: both (PostgreSQL is skipped with a message when unreachable); with --peers: sqlite")
    p.add_argument("--pg-scenarios", default=",".join(map(str, PG_DEFAULT_SCENARIOS)),
                   help="scenarios that also run on PostgreSQL when --db both (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="short smoke run (few requests, 2 s levels)")
    p.add_argument("--peers", action="store_true", help="also run scenarios 1-3 (and 8) against n8n (/tmp/n8n)")
    p.add_argument("--install-peers", action="store_true", help="install n8n first if /tmp/n8n is missing (~4 min)")
    p.add_argument("--n8n-config", choices=("default", "legacy", "both"), default="default",
                   help="n8n expression engine: its default (vm), legacy, or both")
    p.add_argument("--profile", dest="profile", action="store_true", default=None,
                   help="also record py-spy profiles of scenarios 2 and 3 (about 1 min more); with "
                        "scenario 8: its Redis/SQL counts per execution and py-spy of io1 (own stack)")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-only", action="store_true", help="only the profiles")
    p.add_argument("--profile-seconds", type=float, default=20.0)
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each stack, wait up to SECONDS for other processes to leave the CPUs idle")
    p.add_argument("--quiet-threshold", type=float, default=25.0,
                   help="CPU busy %% (100 = one core) under which the machine counts as quiet")
    p.add_argument("--nice", type=int, default=None, metavar="N",
                   help="run the harness and every process it starts (stack, n8n, py-spy) at niceness N; "
                        "a negative N (root) keeps a shared machine's other load from skewing the numbers")
    p.add_argument("--keep-instance", action="store_true",
                   help="keep each stack's instance dir (database, logs) under bench/results/tmp/")
    p.add_argument("--threads", type=int, default=16, help="gunicorn threads (make run uses 16)")
    p.add_argument("--web-workers", type=int, default=2,
                   help="gunicorn worker processes (default 2, as the Procfile; make run uses 1): inline "
                        "runs use them")
    p.add_argument("--inline-max-nodes", type=int, default=None,
                   help="ATHENA_INLINE_MAX_NODES for the stack (default: the app's, 50); 0 sends every "
                        "?wait=true execution through the queue to a worker")
    p.add_argument("--ws-direct-write", choices=("on", "off"), default=None,
                   help="ATHENA_WS_DIRECT_WRITE for the stack (default: the app's, on): off sends every "
                        "WebSocket message with the library's send() from the socket's own thread")
    p.add_argument("--reps", type=int, default=None, help="repetitions per scenario (default 5)")
    p.add_argument("--out", default=None, help="JSON output (default bench/results/<date>-<label>.json)")
    p.add_argument("--label", default=None)
    p.add_argument("--pg-url", default=os.environ.get("ATHENA_BENCH_PG_URL", DEFAULT_PG))
    p.add_argument("--redis-url", default=os.environ.get("ATHENA_BENCH_REDIS_URL", DEFAULT_SERVER_REDIS))
    p.add_argument("--redis-db", type=int, default=int(os.environ.get("ATHENA_BENCH_REDIS_DB", "12")))
    args = p.parse_args(argv)
    if args.scenarios is None:
        args.scenarios = "1,2,3" if args.peers else ",".join(map(str, ALL))
    if args.db is None:
        args.db = "sqlite" if args.peers else "both"
    if args.label is None:
        args.label = ("quick" if args.quick else "peers" if args.peers else "full")
    if args.profile is None:
        args.profile = False
    return args


def _install_signal_handlers() -> None:
    """SIGTERM/SIGINT: stop every stack (and n8n) this run started, then exit."""
    import signal

    from bench import stack as stack_module

    def handler(signum, _frame):
        log(f"[bench] signal {signum}: stopping what this run started")
        for running in list(stack_module.ACTIVE):
            running.stop()
        try:
            from bench.peers import n8n

            n8n.stop_started()
        except Exception:  # noqa: BLE001
            pass
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _install_signal_handlers()
    scenarios = sorted({int(x) for x in args.scenarios.split(",") if x.strip()})
    bad = [s for s in scenarios if s not in ALL]
    if bad:
        log(f"unknown scenario(s) {bad}: choose from {ALL}")
        return 2
    if args.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by every child we start
        except OSError as exc:
            log(f"[bench] --nice {args.nice} refused ({exc}): running at the default priority")
    settings = Settings.quick() if args.quick else Settings()
    if args.reps:
        settings.reps = args.reps
    started = datetime.now(timezone.utc)
    out_path = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{started:%Y-%m-%d}-{args.label}.json"
    result: dict[str, Any] = {
        "meta": {"label": args.label, "started": started.isoformat(timespec="seconds"), "argv": sys.argv[1:],
                 "machine": machine(), "versions": versions(),
                 "settings": {**{k: v for k, v in dataclasses.asdict(settings).items() if k != "extra"},
                              "gunicorn_threads": args.threads, "gunicorn_workers": args.web_workers,
                              "inline_max_nodes": "app default (50)" if args.inline_max_nodes is None
                              else args.inline_max_nodes,
                              "ws_direct_write": args.ws_direct_write or "app default (on)",
                              "niceness": os.getpriority(os.PRIO_PROCESS, 0)}},
        "targets": report.TARGETS, "runs": {}, "skipped": []}
    t0 = time.monotonic()
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if not args.profile_only:
        for db in dbs:
            selected = scenarios
            if db == "postgres":
                why = postgres_unavailable(args.pg_url, args.redis_url)
                if why:
                    message = f"PostgreSQL run skipped: {why}"
                    log(f"[bench] {message}")
                    result["skipped"].append(message)
                    continue
                if args.db == "both":
                    allowed = {int(x) for x in args.pg_scenarios.split(",") if x.strip()}
                    selected = [s for s in scenarios if s in allowed]
            if selected:
                result["runs"][db] = run_database(db, selected, settings, args)
                report.write_json(out_path, result)  # partial results survive a later failure
    if args.peers:
        result["peers"] = run_peers(settings, args, result)
    # --profile: the profiles of the selected scenarios among 2, 3 and 8; --profile-only: the same
    # without the measurements (--profile-only --scenarios 8: only scenario 8's counts and profile)
    profiling = args.profile or args.profile_only
    if profiling and ({2, 3} & set(scenarios) or (args.profile_only and 8 not in scenarios)):
        result["profile"] = _guard(lambda: run_profiles(settings, args))
    if profiling and 8 in scenarios:
        result["profile_s8"] = _guard(lambda: run_s8_profile(settings, args))
    result["verdicts"] = verdicts(result)
    result["meta"]["seconds"] = round(time.monotonic() - t0, 1)
    result["meta"]["loadavg_at_end"] = loadavg()
    report.write_json(out_path, result)
    md_path = out_path.with_suffix(".md")
    md_path.write_text(report.render_markdown(result))
    log(f"[bench] results: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path} "
        f"and {md_path.name} ({result['meta']['seconds']} s)")
    misses = [v for v in result["verdicts"] if v["met"] is False]
    for v in result["verdicts"]:
        log(f"  [{'ok  ' if v['met'] else 'MISS'}] {v['db']:8} s{v['scenario']} {v['measure']}: {v['value']} "
            f"(target {v['target']})")
    if misses:
        log(f"[bench] {len(misses)} target(s) missed (see BENCHMARKS.md for why)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
