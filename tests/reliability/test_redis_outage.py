"""Issue 15, its three chaos defects, each on its own:

1. A job a worker was killed while dequeuing (RQ moved it to ``<queue>:intermediate``, its
   status still ``queued``) is queued again by the sweeper, once it has stayed there longer
   than a hand-over takes, instead of waiting 10-20 minutes for RQ's own cleanup.
2. With Redis unreachable, a webhook call (with or without ``wait``) answers 202 and
   ``POST /api/v1/workflow-executions`` 201, with the ``pending`` execution they committed
   (never a 500 a client would retry into a duplicate); the sweeper queues them once Redis is back.
3. A worker outlives a Redis restart (same process, and it still takes jobs), and a SIGTERM
   while it waits for Redis ends it at once with status 0.

Real components only: the session's Redis and worker, or a stack of its own (persistent
Redis killed and restarted, worker processes: ``tests/reliability/test_redis_restart.py``)."""
from __future__ import annotations

import signal
import time

import pytest
import requests
from rq import Queue
from rq.job import Job
from rq.utils import get_version

import config
from athena import create_app
from athena.extensions import db
from athena.models import WorkflowExecution
from athena.redis_client import get_queue, get_redis
from athena.services import executions as service
from jobs.sweeper import sweep
from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.reliability.support import RecordingTarget, webhook_http_graph
from tests.reliability.test_redis_restart import Stack, stack_factory
from tests.support.servers import LiveServer, free_port, wait_for

__all__ = ["stack_factory"]  # the fixture (a stack of its own, the session worker paused meanwhile)

SAFETY = 60.0  # seconds: bound of the waits below (a safety net, not an assertion about speed)


def _row(uuid: str) -> WorkflowExecution:
    db.session.rollback()
    return db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid == uuid)).scalar_one()


# -- 1. a job stranded in the intermediate list -------------------------------------------------
def test_a_job_left_in_the_intermediate_list_by_a_dead_worker_is_queued_again(app, worker, monkeypatch):
    if get_version(get_redis()) < (6, 2, 0):
        pytest.skip("RQ uses its intermediate list only with Redis >= 6.2 (LMOVE)")
    # The hand-over window is one lease (15 s by default): short here, so the test is too.
    monkeypatch.setitem(app.config, "EXECUTION_LEASE_SECONDS", 1.0)
    worker.stop()  # this test is the worker that dies while dequeuing
    try:
        queue = get_queue()
        queue.empty()  # leftovers (e.g. periodic jobs) would be dequeued before ours
        user = make_user()
        execution = service.create_execution(make_workflow(make_workspace(user), user), user, mode="manual")
        job_id = service.job_id_for(execution)
        # What a worker does first when it takes a job (LMOVE to the intermediate list, fetch)...
        job, _ = Queue.dequeue_any([queue], None, connection=get_redis())
        assert job.id == job_id
        # ... and then it is killed: the job is in no queue, and its status still says queued.
        intermediate = queue.intermediate_queue
        assert job_id in intermediate.get_job_ids() and queue.get_job_position(job_id) is None
        assert Job.fetch(job_id, connection=get_redis()).get_status() == "queued"

        # A sweep right away leaves it alone: a live worker could be in the middle of this.
        assert sweep(grace_seconds=0)["requeued"] == 0
        assert job_id in intermediate.get_job_ids()
        # Once it stayed there longer than the hand-over window, one sweep queues it again.
        wait_for(lambda: sweep(grace_seconds=0)["requeued"], timeout=SAFETY, interval=0.2,
                 message="the sweeper to queue the stranded job again")
        assert job_id not in intermediate.get_job_ids()
        assert queue.get_job_position(job_id) is not None
        assert sweep(grace_seconds=0)["requeued"] == 0  # queued now: waiting, not queued twice
    finally:
        worker.start()
    done = wait_for(lambda: _row(execution.uuid).is_finished and _row(execution.uuid), timeout=SAFETY,
                    message=f"the execution to finish:\n{worker.read_log()[-3000:]}")
    assert done.status == "completed", done.error


# -- 2. API calls while Redis is unreachable ----------------------------------------------------
@pytest.fixture
def unreachable_redis_app(test_settings):
    """The same app and database, with Redis on a port where nothing listens."""
    class NoRedis(config.TestConfig):
        SQLALCHEMY_DATABASE_URI = config._database_url(test_settings["database_url"])
        REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
        QUEUE_NAME = test_settings["queue"]

    return create_app(NoRedis)


def test_calls_while_redis_is_unreachable_answer_with_the_pending_execution(unreachable_redis_app, worker):
    target = RecordingTarget()
    try:
        user = make_user()
        workflow = make_workflow(make_workspace(user), user, *webhook_http_graph(target.url))
        headers = {"Authorization": f"Bearer {token_for(user)}"}
        hook = f"/api/v1/workflows/{workflow.uuid}/webhook"
        client = unreachable_redis_app.test_client()

        answers = {
            "webhook": client.post(hook, json={"kind": "hit", "key": "plain"}, headers=headers),
            "webhook?wait=true": client.post(f"{hook}?wait=true&timeout=5", json={"kind": "hit", "key": "waited"},
                                             headers=headers),
            "create": client.post("/api/v1/workflow-executions", headers=headers,
                                  json={"workflow_uuid": workflow.uuid, "input": {"body": {"kind": "hit", "key": "api"}}}),
        }
        codes = {name: answer.status_code for name, answer in answers.items()}
        assert codes == {"webhook": 202, "webhook?wait=true": 202, "create": 201}, \
            {name: answer.get_data(as_text=True) for name, answer in answers.items()}
        uuids = [answer.json["data"]["uuid"] for answer in answers.values()]
        assert all(answer.json["data"]["status"] == "pending" for answer in answers.values())
        rows = db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.workflow_id == workflow.id)
                                  ).scalars().all()
        assert sorted(row.uuid for row in rows) == sorted(uuids)  # each call created one execution
        assert all(row.status == "pending" for row in rows)

        # Redis is back (the session's): one sweep queues all three, the worker runs them.
        assert sweep(grace_seconds=0)["requeued"] == 3
        for uuid in uuids:
            done = wait_for(lambda: _row(uuid).is_finished and _row(uuid), timeout=SAFETY,
                            message=f"{uuid} to finish:\n{worker.read_log()[-3000:]}")
            assert done.status == "completed", done.error
        assert target.count("plain") == target.count("waited") == 1
    finally:
        target.close()


def test_an_inline_run_while_redis_is_unreachable_answers_its_finished_execution(unreachable_redis_app):
    """A ``?wait=true`` call of a workflow of pure nodes runs inline: it needs no Redis to run,
    so it answers 200 with the finished execution, recorded once (only its live events are lost)."""
    user = make_user()
    nodes = [{"id": "start", "type": "webhook", "parameters": {}},
             {"id": "double", "type": "set", "parameters": {"fields": {"n": "{{ trigger.body.n * 2 }}"}}}]
    workflow = make_workflow(make_workspace(user), user, nodes, [{"id": "e", "source": "start", "target": "double"}])
    answer = unreachable_redis_app.test_client().post(
        f"/api/v1/workflows/{workflow.uuid}/webhook?wait=true", json={"n": 21},
        headers={"Authorization": f"Bearer {token_for(user)}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["data"]["status"] == "completed" and answer.json["data"]["output"] == {"double": {"n": 42}}
    rows = db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.workflow_id == workflow.id)
                              ).scalars().all()
    assert [(row.uuid, row.status) for row in rows] == [(answer.json["data"]["uuid"], "completed")]


# -- 3. the worker process outlives a Redis restart ---------------------------------------------
def _start(server: LiveServer, headers: dict[str, str], workflow_uuid: str, kind: str, key: str) -> str:
    response = requests.post(f"{server.url}/api/v1/workflows/{workflow_uuid}/webhook",
                             json={"kind": kind, "key": key}, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["data"]["uuid"]


def _finished(stack: Stack, uuid: str) -> WorkflowExecution:
    return wait_for(lambda: _row(uuid).is_finished and _row(uuid), timeout=SAFETY, interval=0.2,
                    message=f"{uuid} to finish:\n{stack.logs()}")


@pytest.mark.slow
def test_a_worker_outlives_a_redis_restart_in_the_middle_of_a_job(stack_factory):
    stack: Stack = stack_factory(1)
    target = RecordingTarget()
    web = LiveServer(stack.app).start()
    try:
        with stack.app.app_context():
            user = make_user()
            workflow = make_workflow(make_workspace(user), user, *webhook_http_graph(target.url))
            headers = {"Authorization": f"Bearer {token_for(user)}"}
            [worker] = stack.workers
            pid = worker.process.pid
            held = _start(web, headers, workflow.uuid, "hold", "held")
            wait_for(lambda: target.holding() == {"held"}, timeout=SAFETY, message="the held request")
            stack.kill_redis()
            target.release("held")  # the node finishes while Redis is down: the job loses Redis
            wait_for(lambda: "worker: lost Redis" in worker.read_log(), timeout=SAFETY,
                     message="the worker to notice", interval=0.2)
            time.sleep(1.0)  # a few reconnection attempts (not an assertion)
            stack.start_redis()

            assert _finished(stack, held).status == "completed"  # continued by the worker's own sweeper
            after = _start(web, headers, workflow.uuid, "hit", "after")
            assert _finished(stack, after).status == "completed"
            assert worker.alive() and worker.process.pid == pid, stack.logs()  # the same process
            assert target.count("held") == 1 and target.count("after") == 1
    finally:
        web.stop()
        target.close()


@pytest.mark.slow
@pytest.mark.parametrize("state", ["idle", "lost Redis in a job"])
def test_sigterm_while_waiting_for_redis_exits_at_once_with_status_0(stack_factory, state):
    stack: Stack = stack_factory(1)
    target = RecordingTarget()
    web = LiveServer(stack.app).start()
    try:
        [worker] = stack.workers
        with stack.app.app_context():
            user = make_user()
            workflow = make_workflow(make_workspace(user), user, *webhook_http_graph(target.url))
            headers = {"Authorization": f"Bearer {token_for(user)}"}
            _start(web, headers, workflow.uuid, "hold" if state != "idle" else "hit", "k")
            wait_for(lambda: target.count("k") == 1, timeout=SAFETY, message="the request")
            if state == "idle":
                wait_for(lambda: (e := _first_execution(workflow.id)) is not None and e.is_finished, timeout=SAFETY,
                         message="the execution to finish")
            stack.kill_redis()
            target.release("k")
            marker = "worker: lost Redis" if state != "idle" else "could not connect to Redis"
            wait_for(lambda: marker in worker.read_log(), timeout=SAFETY, interval=0.2,
                     message=f"the worker to wait for Redis:\n{worker.read_log()[-3000:]}")
            worker.kill(signal.SIGTERM)
            assert worker.process.wait(30) == 0, worker.read_log()[-3000:]
    finally:
        web.stop()
        target.close()


def _first_execution(workflow_id: int) -> WorkflowExecution | None:
    db.session.rollback()
    return db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.workflow_id == workflow_id)
                              ).scalars().first()
