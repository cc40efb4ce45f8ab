"""Bench-only SQL statement counter, loaded into the stack's processes through ``PYTHONPATH``
(``bench/sqlcount``) when ``ATHENA_BENCH_SQL_COUNT_DIR`` is set (``Stack.count_sql``). No app code
changes: it listens on SQLAlchemy's ``Engine`` class (every engine of the process) for
``before_cursor_execute`` (each statement, counted by its first keyword) and for ``commit`` /
``rollback``; on SQLite also every statement the driver runs (``sqlite3``'s trace callback:
BEGIN, COMMIT, PRAGMA... included, keys ``sqlite:*``), and a daemon thread writes the counts to ``<dir>/<pid>.json`` every 0.2 s (the
harness sums the files before and after a phase: :mod:`bench.sqlcounts`). After ``fork`` (the
gunicorn worker, RQ's scheduler) the child starts from zero with its own file."""
from __future__ import annotations

import os

_DIR = os.environ.get("ATHENA_BENCH_SQL_COUNT_DIR")


def _install(directory: str) -> None:
    import json
    import threading
    import time
    from collections import Counter

    state = {"counts": Counter(), "thread": None, "pid": os.getpid()}
    lock = threading.Lock()

    def writer() -> None:
        last = None
        path = os.path.join(directory, f"{os.getpid()}.json")
        while True:
            time.sleep(0.2)
            with lock:
                snapshot = dict(state["counts"])
            if snapshot != last:
                tmp = path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(snapshot, f)
                os.replace(tmp, path)
                last = snapshot

    def bump(key: str) -> None:
        with lock:
            state["counts"][key] += 1
            if state["thread"] is None or state["pid"] != os.getpid():
                state["pid"] = os.getpid()
                thread = threading.Thread(target=writer, name="bench-sqlcount", daemon=True)
                state["thread"] = thread
                thread.start()

    def after_fork() -> None:
        state["counts"] = Counter()
        state["thread"] = None
        state["pid"] = os.getpid()

    os.register_at_fork(after_in_child=after_fork)

    def attach() -> bool:
        try:
            from sqlalchemy import event
            from sqlalchemy.engine import Engine
        except ImportError:
            return False

        @event.listens_for(Engine, "before_cursor_execute")
        def _statement(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
            word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
            bump("statements")
            bump(f"stmt:{word}")

        from sqlalchemy.pool import Pool

        @event.listens_for(Pool, "connect")
        def _connect(dbapi_connection, record):  # noqa: ANN001
            # SQLite: also what the driver itself sends (BEGIN, COMMIT, PRAGMA...), per statement.
            trace = getattr(dbapi_connection, "set_trace_callback", None)
            if trace is not None:
                def traced(statement: str) -> None:
                    text = statement.lstrip()
                    bump("sqlite:" + (text.split(None, 1)[0].upper() if text else "?"))
                    bump("sqlite_statements")
                trace(traced)

        @event.listens_for(Engine, "commit")
        def _commit(conn):  # noqa: ANN001
            bump("commits")

        @event.listens_for(Engine, "rollback")
        def _rollback(conn):  # noqa: ANN001
            bump("rollbacks")

        return True

    os.makedirs(directory, exist_ok=True)
    attach()


if _DIR:
    try:
        _install(_DIR)
    except Exception as exc:  # noqa: BLE001 - a counter must never break the process it counts
        import sys

        print(f"[bench sqlcount] not installed: {exc}", file=sys.stderr)
