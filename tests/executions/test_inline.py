"""Inline runs (athena/services/inline.py): a ``?wait=true`` webhook call of a workflow with only
pure nodes runs in the API process; the same rows, lease, checkpoints and events as on a worker,
no RQ job; anything else still goes through the queue; an inline run whose API process died is
continued by the sweeper on a worker."""
from __future__ import annotations

from datetime import timedelta

import pytest
from rq.job import Job

from athena.eventlog import event_log_for_app, stream_key
from athena.extensions import db
from athena.models import Workflow, WorkflowExecution
from athena.services import inline
from athena.services.executions import create_execution, job_id_for
from athena.services.recovery import recover_orphans
from athena.timeutil import utcnow
from tests.executions.test_webhook import SAFETY, hook_url, stored, wait_finished, webhook_graph
from tests.factories import linear_graph, make_user, make_workflow, make_workspace, token_for


@pytest.fixture
def owner_scene():
    owner = make_user()
    workspace = make_workspace(owner)
    return owner, workspace, {"Authorization": f"Bearer {token_for(owner)}"}


def events_of(uuid: str) -> list[dict]:
    return event_log_for_app().read_after(stream_key(uuid), 0)


def job_exists(redis_conn, execution) -> bool:
    return Job.exists(job_id_for(execution), connection=redis_conn)


def test_a_pure_workflow_runs_inline_with_every_event(client, redis_conn, owner_scene):
    owner, workspace, headers = owner_scene
    nodes, edges = webhook_graph()
    workflow = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    assert inline.eligible(workflow)
    workflow_uuid, workspace_uuid, workflow_id = workflow.uuid, workspace.uuid, workflow.id

    response = client.post(hook_url(workflow, "wait=true&source=inline"), json={"email": "i@example.com"},
                           headers=headers)
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["status"] == "completed" and data["is_finished"] is True and data["mode"] == "webhook"
    assert data["output"] == {"echo": {"email": "i@example.com", "source": "inline"}}
    assert data["workflow_uuid"] == workflow_uuid and data["workspace_uuid"] == workspace_uuid

    row = stored(data["uuid"])
    assert not job_exists(redis_conn, row)  # never queued
    assert [entry["node_id"] for entry in row.execution_data.workflow_data] == ["hook", "echo"]
    assert all(entry["status"] == "success" for entry in row.execution_data.workflow_data)
    assert row.execution_data.meta["processed_count"] == 2 and row.started_at and row.stopped_at

    events = events_of(data["uuid"])
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert [(event["event"], event.get("status"), event.get("node_id")) for event in events] == [
        ("execution.status", "pending", None),
        ("execution.status", "running", None),
        ("node.started", None, "hook"),
        ("node.finished", "success", "hook"),
        ("node.started", None, "echo"),
        ("node.finished", "success", "echo"),
        ("execution.status", "completed", None),
        ("execution.finished", "completed", None),
    ]
    assert db.session.get(Workflow, workflow_id).trigger_count == 1


def test_impure_nodes_long_graphs_wait_false_and_the_switch_use_the_queue(client, worker, redis_conn, owner_scene,
                                                                         app, monkeypatch):
    owner, workspace, headers = owner_scene
    impure = make_workflow(workspace, owner, nodes=[
        {"id": "hook", "type": "webhook", "parameters": {}},
        {"id": "pause", "type": "wait", "parameters": {"seconds": 0}},
    ], edges=[{"id": "e1", "source": "hook", "target": "pause"}])
    nodes, edges = linear_graph(app.config["INLINE_MAX_NODES"] + 1, trigger="webhook")
    long_chain = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    nodes, edges = webhook_graph()
    pure = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    assert not inline.eligible(impure) and not inline.eligible(long_chain) and inline.eligible(pure)

    urls = {name: hook_url(workflow) for name, workflow in (("impure", impure), ("long", long_chain), ("pure", pure))}
    for name, query in (("impure", "wait=true"), ("long", "wait=true"), ("pure", "")):
        response = client.post(f"{urls[name]}?{query}", json={}, headers=headers)
        assert response.status_code in (200, 202), response.json
        uuid = response.json["data"]["uuid"]
        assert wait_finished(uuid, worker)["status"] == "completed"
        assert job_exists(redis_conn, stored(uuid)), f"{name} {query!r} did not go through the queue"

    monkeypatch.setitem(app.config, "INLINE_MAX_NODES", 0)
    assert not inline.eligible(pure)
    response = client.post(f"{urls['pure']}?wait=true", json={}, headers=headers)
    assert response.status_code == 200, response.json
    assert job_exists(redis_conn, stored(response.json["data"]["uuid"]))


def test_when_every_inline_slot_is_taken_the_call_goes_through_the_queue(client, worker, redis_conn, app,
                                                                      owner_scene):
    owner, workspace, headers = owner_scene
    nodes, edges = webhook_graph()
    url = hook_url(make_workflow(workspace, owner, nodes=nodes, edges=edges), "wait=true")
    slots = inline._slots()
    taken = 0
    while slots.acquire(blocking=False):  # what concurrent inline runs would hold
        taken += 1
    try:
        assert taken == app.config["INLINE_CONCURRENCY"]
        response = client.post(url, json={}, headers=headers)
        assert response.status_code == 200, response.json
        assert response.json["data"]["status"] == "completed"
        assert job_exists(redis_conn, stored(response.json["data"]["uuid"]))
    finally:
        for _ in range(taken):
            slots.release()
    response = client.post(url, json={}, headers=headers)  # a slot is free again: inline
    assert response.status_code == 200, response.json
    assert not job_exists(redis_conn, stored(response.json["data"]["uuid"]))


def test_an_inline_run_whose_api_process_died_is_continued_by_a_worker(worker, owner_scene):
    """What a dead API process leaves behind: the execution created ``running``, no lease, no job."""
    owner, workspace, _ = owner_scene
    nodes, edges = webhook_graph()
    workflow = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    execution = create_execution(workflow, owner, mode="webhook", input={"body": {"email": "x@example.com"},
                                                                        "query": {}, "headers": {}},
                                 start=False, running=True)
    uuid = execution.uuid
    db.session.execute(db.update(WorkflowExecution).where(WorkflowExecution.uuid == uuid)
                       .values(updated_at=utcnow() - timedelta(seconds=60)))
    db.session.commit()

    assert recover_orphans(grace_seconds=5)["continued"] == 1
    finished = wait_finished(uuid, worker)
    assert finished["status"] == "completed", finished
    row = stored(uuid)
    assert row.output == {"echo": {"email": "x@example.com", "source": None}}
    assert row.crash_count == 1 and "lease expired" in row.execution_data.meta["last_crash_reason"]
    assert SAFETY  # waits above are bounded by it
