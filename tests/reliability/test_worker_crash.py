"""Issue 6 items 1 and 2: a worker killed (SIGKILL) or shut down (SIGTERM) in the middle of a
node loses nothing: the execution continues from its last checkpoint on a restarted worker."""
from __future__ import annotations

import signal
import time

import pytest

from athena.extensions import db
from athena.models import WorkflowExecution
from athena.services import executions as service
from jobs.sweeper import sweep
from tests.factories import make_user, make_workflow, make_workspace
from tests.reliability.support import CountingTarget, http_chain
from tests.support.servers import wait_for

NODES = 10
TRIALS = 20


@pytest.fixture(scope="module")
def target():
    server = CountingTarget()
    yield server
    server.close()


def _execution(uuid: str) -> WorkflowExecution:
    db.session.rollback()
    return db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid == uuid)).scalar_one()


def _start(target: CountingTarget, hold_at: int):
    user = make_user()
    workflow = make_workflow(make_workspace(user), user, *http_chain(target.url, NODES, hold_at))
    return service.create_execution(workflow, user, mode="manual").uuid


def _recover_until_finished(uuid: str) -> WorkflowExecution:
    """Drive the real sweeper (as the worker's periodic job would) until the execution ends."""
    def finished():
        sweep(grace_seconds=0)
        execution = _execution(uuid)
        return execution if execution.is_finished else None

    return wait_for(finished, timeout=90, interval=0.5, message=f"recovery of {uuid}")


@pytest.mark.slow
def test_sigkill_mid_node_resumes_from_checkpoint(target, worker):
    detection = []
    for trial in range(TRIALS):
        hold_at = trial % (NODES - 1) + 1  # k = 1..9, the node running when the worker dies
        target.reset()
        uuid = _start(target, hold_at)
        assert target.holding.wait(60), worker.read_log()[-2000:]
        worker.kill(signal.SIGKILL)
        worker.process.wait(30)
        killed_at = time.monotonic()
        target.release()
        worker.start()
        execution = _recover_until_finished(uuid)
        detection.append(time.monotonic() - killed_at)

        assert execution.status == "completed", (trial, execution.error)
        for i in range(1, NODES + 1):
            expected = 2 if i == hold_at else 1  # the interrupted node runs again; no other
            assert target.counts[f"n{i}"] == expected, (trial, hold_at, dict(target.counts))
        meta = execution.execution_data.meta
        assert meta["crash_count"] == 1 and "lease expired" in meta["last_crash_reason"]
        entries = execution.execution_data.workflow_data
        assert [e["node_id"] for e in entries] == ["start"] + [f"n{i}" for i in range(1, NODES + 1)]
    print(f"crash trials: {TRIALS}/{TRIALS} completed; recovery after kill (s): "
          f"min {min(detection):.1f} median {sorted(detection)[len(detection) // 2]:.1f} max {max(detection):.1f}")


@pytest.mark.slow
def test_execution_fails_after_too_many_crashes(app, target, worker):
    target.reset()
    uuid = _start(target, hold_at=3)
    assert target.holding.wait(60)
    execution = _execution(uuid)
    execution.crash_count = app.config["EXECUTION_MAX_CRASHES"]  # as if it had been lost that often
    db.session.commit()
    worker.kill(signal.SIGKILL)
    worker.process.wait(30)
    target.release()
    worker.start()
    execution = _recover_until_finished(uuid)
    assert execution.status == "failed"
    assert "lost" in execution.error and execution.execution_data.meta["crash_count"] == 4
    assert target.counts["n4"] == 0  # nothing ran after the failure


@pytest.mark.slow
def test_sigterm_finishes_the_node_then_another_worker_continues(target, worker):
    target.reset()
    uuid = _start(target, hold_at=4)
    assert target.holding.wait(60)
    worker.kill(signal.SIGTERM)  # warm shutdown while n4 is in progress
    time.sleep(0.5)  # let the signal land before the node finishes (not a timing assertion)
    target.release()
    worker.process.wait(60)  # the worker exits after handing the execution over
    handed = _execution(uuid)  # handed over: n4 finished and is checkpointed, nothing after it ran
    assert handed.status == "running" and target.counts["n4"] == 1 and target.counts["n5"] == 0
    assert [e["node_id"] for e in handed.execution_data.workflow_data][-1] == "n4"
    worker.start()  # another worker takes the continuation from the queue
    execution = wait_for(lambda: (e := _execution(uuid)).is_finished and e, timeout=90, message="continuation")
    assert execution.status == "completed"
    assert all(target.counts[f"n{i}"] == 1 for i in range(1, NODES + 1)), dict(target.counts)
    assert execution.crash_count == 0
