"""Inline runs (athena/services/inline.py): a ``?wait=true`` webhook call of a workflow with only
pure nodes runs in the API process; the same rows, lease, checkpoints and events as on a worker,
no RQ job; anything else still goes through the queue; an inline run whose API process died is
continued by the sweeper on a worker."""
from __future__ import annotations

import threading
from datetime import timedelta


import pytest
from rq.job import Job
from sqlalchemy import event

from athena.runs.eventlog import event_log_for_app, stream_key
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


def test_a_call_waits_for_a_free_inline_slot_and_after_the_wait_uses_the_queue(client, worker, redis_conn, app,
                                                                            owner_scene, monkeypatch):
    owner, workspace, headers = owner_scene
    nodes, edges = webhook_graph()
    url = hook_url(make_workflow(workspace, owner, nodes=nodes, edges=edges), "wait=true")
    monkeypatch.setitem(app.config, "INLINE_WAIT_SECONDS", 5.0)
    slots = inline._slots()
    taken = 0
    while slots.acquire(blocking=False):  # what concurrent inline runs would hold
        taken += 1
    try:
        assert taken == app.config["INLINE_CONCURRENCY"]
        freed = threading.Timer(0.2, slots.release)  # one run ends while the call waits
        freed.start()
        response = client.post(url, json={}, headers=headers)
        freed.join()
        taken -= 1
        assert response.status_code == 200, response.json
        assert not job_exists(redis_conn, stored(response.json["data"]["uuid"]))  # it got the slot

        assert slots.acquire(blocking=False)
        taken += 1
        monkeypatch.setitem(app.config, "INLINE_WAIT_SECONDS", 0.05)  # no slot frees up in time
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


class CommitCounter:
    """Counts the database commits of the app's engine while active (an observer, not a fake)."""

    def __init__(self) -> None:
        self.commits = 0

    def __enter__(self) -> "CommitCounter":
        event.listen(db.engine, "commit", self._on_commit)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(db.engine, "commit", self._on_commit)

    def _on_commit(self, _conn) -> None:
        self.commits += 1


EXPECTED_EVENTS = [
    ("execution.status", "pending", None), ("execution.status", "running", None),
    ("node.started", None, "hook"), ("node.finished", "success", "hook"),
    ("node.started", None, "echo"), ("node.finished", "success", "echo"),
    ("execution.status", "completed", None), ("execution.finished", "completed", None),
]


def _trigger(client, headers, workflow, query: str = "wait=true"):
    with CommitCounter() as counter:
        response = client.post(hook_url(workflow, query), json={"email": "d@example.com"}, headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"], counter.commits


def _event_shape(uuid: str) -> list[tuple]:
    events = events_of(uuid)
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    return [(event["event"], event.get("status"), event.get("node_id")) for event in events]


def test_a_short_inline_run_is_written_in_one_commit_with_the_same_rows_and_events(client, redis_conn, app,
                                                                                owner_scene, monkeypatch):
    owner, workspace, headers = owner_scene
    nodes, edges = webhook_graph()
    workflow = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    workflow_id = workflow.id

    deferred, deferred_commits = _trigger(client, headers, workflow)
    # A batch age of 0 makes every run too long for one batch: it runs again the persisted way.
    monkeypatch.setitem(app.config, "CHECKPOINT_INTERVAL_SECONDS", 0.0)
    persisted, persisted_commits = _trigger(client, headers, workflow)
    assert deferred_commits == 1 < persisted_commits

    for data in (deferred, persisted):
        assert data["status"] == "completed" and data["is_finished"] is True
        assert data["output"] == {"echo": {"email": "d@example.com", "source": None}}
        assert _event_shape(data["uuid"]) == EXPECTED_EVENTS  # nothing twice from the dropped attempt
        row = stored(data["uuid"])
        assert not job_exists(redis_conn, row)
        assert row.created_at <= row.started_at <= row.stopped_at
        assert row.execution_data.meta["processed_count"] == 2
        shown = client.get(f"/api/v1/workflow-executions/{data['uuid']}?with=workflowExecutionData",
                           headers=headers).json["data"]["workflow_execution_data"][0]["metadata"]
        assert shown["workflow_execution_data_id"] == row.execution_data.id and shown["processed_count"] == 2
        assert [entry["node_id"] for entry in row.execution_data.workflow_data] == ["hook", "echo"]
    assert db.session.get(Workflow, workflow_id).trigger_count == 2
    stop = client.post(f"/api/v1/workflow-executions/{deferred['uuid']}/stop", headers=headers)
    assert stop.status_code == 409  # finished, like any finished execution


def test_a_graph_that_reads_the_execution_takes_the_persisted_way(client, owner_scene):
    owner, workspace, headers = owner_scene
    workflow = make_workflow(workspace, owner, nodes=[
        {"id": "hook", "type": "webhook", "parameters": {}},
        {"id": "who", "type": "set", "parameters": {"fields": {"id": "{{ execution.id }}",
                                                                "uuid": "{{ execution.uuid }}"}}},
    ], edges=[{"id": "e1", "source": "hook", "target": "who"}])
    data, commits = _trigger(client, headers, workflow)
    assert commits > 1
    assert data["output"] == {"who": {"id": data["id"], "uuid": data["uuid"]}}
