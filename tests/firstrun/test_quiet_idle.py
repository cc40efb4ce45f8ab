"""An idle worker logs nothing at INFO: the periodic passes (sweep, schedule reconcile) log only
when they did something, and RQ's own lines about them are DEBUG (jobs/periodic.py)."""
from __future__ import annotations

import logging
import signal
import uuid

import pytest
from rq import Queue, SimpleWorker

from athena.extensions import db
from athena.models import WorkflowApproval, WorkflowExecution
from athena.redis_client import get_redis
from jobs.periodic import QUIET_LOGGERS, quiet_periodic_logs
from jobs.schedules import run_reconcile
from jobs.sweeper import run_sweep
from tests.realtime.support import make_scene


PASS_LOGGERS = ("jobs.sweeper", "jobs.schedules", "jobs.periodic", "athena.services.recovery",
                "athena.services.schedules", "athena.services.resume", "athena.services.approvals")


def _info(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]


@pytest.fixture
def pass_loggers():
    """The migrations' fileConfig (conftest) disabled the loggers that existed then: on again."""
    saved = {name: logging.getLogger(name).disabled for name in PASS_LOGGERS}
    for name in PASS_LOGGERS:
        logging.getLogger(name).disabled = False
    yield
    for name, disabled in saved.items():
        logging.getLogger(name).disabled = disabled


def test_idle_passes_log_nothing_at_info(caplog, pass_loggers):
    assert db.session.execute(db.select(WorkflowExecution.id)).first() is None  # an empty database
    caplog.set_level(logging.INFO)
    for _ in range(3):
        assert not any(run_sweep().values())
        result = run_reconcile(force=True)
        assert result == {"checked": 0, "armed": 0, "caught_up": 0}
    assert _info(caplog) == []


def test_a_pass_that_did_something_says_so_at_info(caplog, pass_loggers):
    """The contrast: a pending approval of an execution that ended is cancelled, and logged."""
    scene = make_scene(status="cancelled")
    db.session.add(WorkflowApproval(workflow_execution_id=scene.execution.id, node_id="review", status="pending",
                                    message="Go?"))
    db.session.commit()
    caplog.set_level(logging.INFO)
    assert run_sweep()["approvals_cancelled"] == 1
    assert [line for line in _info(caplog) if line.startswith("jobs.sweeper: sweep: ")], _info(caplog)
    caplog.clear()
    assert run_sweep()["approvals_cancelled"] == 0  # done: idle again
    assert _info(caplog) == []


@pytest.fixture
def private_queue():
    queue = Queue(f"athena-firstrun-{uuid.uuid4().hex[:8]}", connection=get_redis())
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).disabled) for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:  # the migrations' fileConfig (conftest) disabled the loggers existing then
        logging.getLogger(name).disabled = False
    yield queue
    for sig, handler in handlers.items():  # the in-process worker installed its own
        signal.signal(sig, handler)
    for name, (level, disabled) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).disabled = disabled
    queue.delete(delete_jobs=True)


def test_rq_lines_about_periodic_jobs_are_debug_and_other_jobs_keep_theirs(caplog, private_queue):
    """A real RQ worker (in this process, burst mode) runs two sweeps and an ordinary job."""
    quiet = quiet_periodic_logs([run_sweep, run_reconcile])
    try:
        caplog.set_level(logging.INFO)
        sweeps = [private_queue.enqueue("jobs.sweeper.run_sweep") for _ in range(2)]
        other = private_queue.enqueue("os.getpid")
        SimpleWorker([private_queue], connection=private_queue.connection).work(burst=True, logging_level="INFO")
    finally:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)
    for job in [*sweeps, other]:
        assert job.get_status(refresh=True) == "finished"
    lines = _info(caplog)
    assert not [line for line in lines if "run_sweep" in line or any(job.id in line for job in sweeps)], lines
    # RQ does log at INFO here: the ordinary job's lines are all there
    assert any("os.getpid()" in line for line in lines), lines
    assert any("Job OK" in line and other.id in line for line in lines), lines
