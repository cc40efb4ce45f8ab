"""``make run`` (``python -m athena.dev.devserver``) for real: the banner is the last thing it prints
at startup, short, with the ``/rq`` dashboard; then periodic passes run and print nothing."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from athena.dev.devserver import BANNER_TITLE
from tests.support.servers import wait_for
from tests.test_devserver import EXIT_TIMEOUT, READY_TIMEOUT, DevServer

PASSES = 4  # sweeps + reconciles the worker must have run, after the banner, before the log is read


@pytest.fixture(autouse=True)
def _app_context():
    """These tests drive subprocesses only: no in-process app, database or cleanup needed."""
    yield


@pytest.fixture
def devserver(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ATHENA_SWEEPER_INTERVAL", "1")  # passes every second: an idle log shows them fast
    monkeypatch.setenv("ATHENA_SCHEDULE_RECONCILE_SECONDS", "1")
    server = DevServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


def _full_log(server: DevServer) -> str:
    server._log.flush()
    return server.log_path.read_text(errors="replace")


def _worker_passes(server: DevServer) -> int:
    from redis import Redis
    from rq import Worker

    with Redis.from_url(f"redis://127.0.0.1:{server.redis_port}/0") as connection:
        return sum(worker.successful_job_count for worker in Worker.all(connection=connection))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_banner_comes_last_and_idle_passes_print_nothing(devserver: DevServer) -> None:
    def banner_out() -> bool:
        if devserver.process.poll() is not None:
            pytest.fail(f"devserver exited with code {devserver.process.returncode}:\n{_full_log(devserver)}")
        return "Stop: Ctrl-C" in _full_log(devserver)

    wait_for(banner_out, timeout=READY_TIMEOUT, interval=0.1, message="the devserver's banner")
    passes_at_banner = _worker_passes(devserver)
    wait_for(lambda: _worker_passes(devserver) >= passes_at_banner + PASSES, timeout=READY_TIMEOUT, interval=0.1,
             message=f"{PASSES} periodic passes after the banner")

    log = _full_log(devserver)
    before, banner = log.split(f"\n{BANNER_TITLE}\n", 1)
    banner, after = banner.split("Stop: Ctrl-C\n", 1)
    assert after.strip() == "", f"printed after the banner (idle periodic passes, late start-up lines):\n{after}"
    base = f"http://127.0.0.1:{devserver.port}"
    assert f"  Jobs:      {base}/rq/" in banner, banner
    for expected in (f"{base}/api/v1/docs", "users create", "tokens create", "--admin"):
        assert expected in banner, f"banner lacks {expected!r}:\n{banner}"
    assert len(banner.strip().splitlines()) <= 12, f"the banner is not short:\n{banner}"
    assert "token=" not in banner, "the banner shows a token in a URL"
    # everything of the start-up came before it: migrations, the API, the worker and its scheduler
    for startup in ("Running upgrade", "Listening at:", "Booting worker", "*** Listening on",
                    "Scheduler for"):
        assert startup in before, f"{startup!r} not before the banner:\n{before[-3000:]}"
    assert "alembic.runtime.plugins" not in log, "alembic's plugin set-up lines are back"
    assert "run_sweep" not in before.split("*** Listening on", 1)[1], "RQ lines about the sweep at startup"

    devserver.process.send_signal(signal.SIGTERM)
    assert devserver.process.wait(EXIT_TIMEOUT) == 0, _full_log(devserver)[-3000:]
