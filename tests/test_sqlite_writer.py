"""athena/sqlite_writer.py: writers on one SQLite file wait in line (threads and processes) and
are let through the moment the writer before them commits; nobody waits for itself."""
from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from athena.sqlite_writer import connect_args

pytestmark = pytest.mark.skipif(not connect_args("/tmp/x.db"), reason="POSIX flock only")


def _connect(path: Path, busy_ms: int = 10_000) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=busy_ms / 1000, check_same_thread=False, **connect_args(str(path)))
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "w.db"
    conn = _connect(path)
    conn.execute("CREATE TABLE log (who TEXT)")
    conn.commit()
    conn.close()
    return path


def _write_in_thread(path: Path, who: str, order: list[str]) -> threading.Thread:
    """A writer whose own SQLite busy wait is 50 ms: it can only get through a long wait in line."""
    def write() -> None:
        conn = _connect(path, busy_ms=50)
        conn.execute("INSERT INTO log VALUES (?)", (who,))
        order.append(f"{who} wrote")
        conn.commit()
        conn.close()

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_second_writer_waits_for_the_first_commit_then_goes_at_once(database: Path):
    first = _connect(database)
    first.execute("INSERT INTO log VALUES ('first')")  # holds the writer lock, uncommitted
    order: list[str] = []
    second = _write_in_thread(database, "second", order)
    second.join(timeout=0.3)
    assert second.is_alive() and order == []  # waiting in line, not failing
    order.append("first committed")
    first.commit()
    second.join(timeout=30)
    assert not second.is_alive()
    assert order == ["first committed", "second wrote"]
    assert [row[0] for row in first.execute("SELECT who FROM log")] == ["first", "second"]
    first.close()


def test_reads_do_not_wait_for_a_writer(database: Path):
    writer = _connect(database)
    writer.execute("INSERT INTO log VALUES ('w')")
    reader = _connect(database)
    assert reader.execute("SELECT count(*) FROM log").fetchone() == (0,)  # WAL: the committed state
    writer.rollback()
    reader.close()
    writer.close()


def test_a_thread_never_waits_for_its_own_other_connection(database: Path):
    mine = _connect(database)
    mine.execute("INSERT INTO log VALUES ('mine')")
    other = _connect(database, busy_ms=50)  # same thread: SQLite's own busy handling answers
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("INSERT INTO log VALUES ('other')")
    other.rollback()
    mine.commit()
    other.execute("INSERT INTO log VALUES ('other')")  # free again: no lock was left behind
    other.commit()
    assert sorted(row[0] for row in mine.execute("SELECT who FROM log")) == ["mine", "other"]
    mine.close()
    other.close()


def _hold_in_child(path: str, holding, release) -> None:
    conn = _connect(Path(path))
    conn.execute("INSERT INTO log VALUES ('child')")
    holding.set()
    release.wait(30)
    conn.commit()
    conn.close()


def test_writers_of_another_process_wait_in_line_too(database: Path):
    context = multiprocessing.get_context("spawn")
    holding, release = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(str(database), holding, release))
    child.start()
    try:
        assert holding.wait(30)
        order: list[str] = []
        mine = _write_in_thread(database, "parent", order)
        mine.join(timeout=0.3)
        assert mine.is_alive() and order == []
        release.set()
        mine.join(timeout=30)
        assert order == ["parent wrote"]
    finally:
        release.set()
        child.join(timeout=30)
    conn = _connect(database)
    assert [row[0] for row in conn.execute("SELECT who FROM log")] == ["child", "parent"]
    conn.close()
