"""POST /workflow-executions/{uuid}/stop and /retry, through the real RQ worker.

Waits follow the execution's replayable event log (or the RQ job's status) with a generous bound
as a safety net; nothing here asserts how long anything takes."""
from __future__ import annotations

import pytest
from rq.job import Job

from athena.runs.eventlog import event_log_for_app, stream_key
from athena.extensions import db
from athena.models import WorkflowExecution, WorkflowExecutionData
from athena.services import executions as service
from tests.factories import headers_for, linear_graph, make_user, make_workflow, make_workspace
from tests.support.servers import wait_for

URL = "/api/v1/workflow-executions"
SAFETY = 60  # seconds


@pytest.fixture
def scene():
    owner, viewer, stranger = make_user(), make_user(), make_user()
    workspace = make_workspace(owner, members={viewer: "viewer"})
    make_workspace(stranger)
    return {"owner": owner, "viewer": viewer, "stranger": stranger, "workspace": workspace,
            "headers": headers_for(owner)}


def events_of(uuid: str) -> list[dict]:
    return event_log_for_app().read_after(stream_key(uuid), 0, count=100_000)


def follow_until(uuid: str, event_name: str, after_seq: int = 0, worker=None) -> dict:
    for event in event_log_for_app().follow(stream_key(uuid), after_seq, SAFETY):
        if event["event"] == event_name:
            return event
    raise AssertionError(f"no {event_name} for {uuid}:\n{worker.read_log()[-3000:] if worker else ''}")


def job_done(execution: WorkflowExecution, redis_conn, worker) -> Job:
    """Wait until the execution's RQ job is over; returns it (result: ``job.return_value()``)."""
    def over():
        job = Job.fetch(service.job_id_for(execution), connection=redis_conn)
        return job if job.get_status() in ("finished", "failed", "canceled", "stopped") else None

    return wait_for(over, timeout=SAFETY, message="the job to end:\n" + worker.read_log()[-3000:])


def stored(uuid: str) -> WorkflowExecution:
    db.session.expire_all()
    return db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid == uuid)).scalar_one()


def row(workflow, user, status: str, parent: WorkflowExecution | None = None) -> WorkflowExecution:
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workflow.workspace_id, user_id=user.id,
                                  status=status, mode="child" if parent else "manual",
                                  is_finished=status in ("completed", "failed", "cancelled"),
                                  parent_execution_id=parent.id if parent else None,
                                  parent_node_id="sub" if parent else None)
    db.session.add(execution)
    db.session.flush()
    # A waiting parent waits on its sub-workflow node "sub" (where its children hang).
    meta = {"running_node": "sub"} if status == "waiting" else {}
    db.session.add(WorkflowExecutionData(workflow_execution_id=execution.id, workflow_data=[], meta=meta, data={}))
    db.session.commit()
    return execution


# -- stop ------------------------------------------------------------------------------------

def test_stop_a_queued_execution_before_it_runs(client, worker, redis_conn, scene):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    execution = service.create_execution(workflow, scene["owner"], mode="manual", input={"a": 1}, start=False)
    response = client.post(f"{URL}/{execution.uuid}/stop", headers=scene["headers"])
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["status"] == "cancelled" and data["is_finished"] is True and data["stopped_at"] is not None
    names = [(e["event"], e.get("status")) for e in events_of(execution.uuid)]
    assert names == [("execution.status", "pending"), ("execution.status", "cancelled"),
                     ("execution.finished", "cancelled")]

    # The job reaches the worker after the stop: it must not run a single node.
    service.enqueue(stored(execution.uuid))
    job = job_done(execution, redis_conn, worker)
    assert job.get_status() == "finished"
    assert job.return_value() in ("already cancelled", "not runnable"), job.return_value()
    row_ = stored(execution.uuid)
    assert row_.status == "cancelled" and row_.started_at is None
    assert row_.execution_data.workflow_data == []
    assert [(e["event"], e.get("status")) for e in events_of(execution.uuid)] == names


def test_stop_a_running_execution_mid_chain(client, worker, redis_conn, scene):
    # Long enough to still run when the stop arrives: a set node costs ~0.1 ms of the worker's time.
    nodes, edges = linear_graph(3000)
    workflow = make_workflow(scene["workspace"], scene["owner"], nodes=nodes, edges=edges)
    headers = scene["headers"]
    created = client.post(URL, json={"workflow_uuid": workflow.uuid}, headers=headers)
    assert created.status_code == 201, created.json
    uuid = created.json["data"]["uuid"]

    first = follow_until(uuid, "node.finished", worker=worker)
    stop = client.post(f"{URL}/{uuid}/stop", headers=headers)
    assert stop.status_code == 200, stop.json
    assert stop.json["data"]["status"] == "cancelled" and stop.json["data"]["stopped_at"] is not None
    finished = follow_until(uuid, "execution.finished", first["seq"], worker=worker)
    assert finished["status"] == "cancelled"
    execution = stored(uuid)
    job = job_done(execution, redis_conn, worker)
    assert job.return_value() == "cancelled"

    events = events_of(uuid)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # execution.finished is the last event, and there is exactly one
    assert events[-1]["event"] == "execution.finished"
    assert [e["event"] for e in events].count("execution.finished") == 1
    # once the worker acknowledged the stop, no node started any more
    cancelled_at = next(i for i, e in enumerate(events)
                        if e["event"] == "execution.status" and e["status"] == "cancelled")
    assert not [e for e in events[cancelled_at:] if e["event"] == "node.started"]
    # every node that started also finished (at most the one running at the stop, then nothing)
    started = [e["node_id"] for e in events if e["event"] == "node.started"]
    done = [e["node_id"] for e in events if e["event"] == "node.finished"]
    assert started == done

    assert execution.status == "cancelled" and execution.is_finished is True
    entries = execution.execution_data.workflow_data
    assert 1 <= len(entries) < 3000
    assert [e["node_id"] for e in entries] == done
    assert all(e["status"] == "success" for e in entries)
    assert execution.execution_data.meta["running_node"] is None

    # stopping it again: it is finished
    again = client.post(f"{URL}/{uuid}/stop", headers=headers)
    assert again.status_code == 409, again.json


def test_stop_by_status_without_a_job(client, scene):
    _stop_a_finished_execution_is_409(client, scene)
    _stop_each_stoppable_status(client, scene)


def _stop_a_finished_execution_is_409(client, scene):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    for status in ("completed", "failed", "cancelled"):
        execution = row(workflow, scene["owner"], status)
        response = client.post(f"{URL}/{execution.uuid}/stop", headers=scene["headers"])
        assert response.status_code == 409, (status, response.json)
        assert response.json["message"]
        assert stored(execution.uuid).status == status
        assert events_of(execution.uuid) == []


def _stop_each_stoppable_status(client, scene):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    for status in ("pending", "waiting", "paused"):
        execution = row(workflow, scene["owner"], status)
        response = client.post(f"{URL}/{execution.uuid}/stop", headers=scene["headers"])
        assert response.status_code == 200, (status, response.json)
        assert response.json["data"]["status"] == "cancelled"
        assert response.json["data"]["wait_till"] is None
        # nobody else would emit the final events for a job that is not running: the API does
        assert [(e["event"], e["status"]) for e in events_of(execution.uuid)] == [
            ("execution.status", "cancelled"), ("execution.finished", "cancelled")], status


def test_stopping_a_child_cancels_the_waiting_parent(client, scene):
    for child_status in ("running", "pending"):
        _stop_child(client, scene, child_status)


def _stop_child(client, scene, child_status):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    parent = row(workflow, scene["owner"], "waiting")
    child = row(workflow, scene["owner"], child_status, parent=parent)
    unrelated = row(workflow, scene["owner"], "waiting")
    response = client.post(f"{URL}/{child.uuid}/stop", headers=scene["headers"])
    assert response.status_code == 200, response.json
    assert stored(child.uuid).status == "cancelled"
    parent_row = stored(parent.uuid)
    assert parent_row.status == "cancelled" and parent_row.is_finished is True
    assert parent_row.stopped_at is not None and child.uuid in (parent_row.error or "")
    assert stored(unrelated.uuid).status == "waiting"
    assert ("execution.finished", "cancelled") in [(e["event"], e["status"]) for e in events_of(parent.uuid)]

    # a parent that is not waiting (for this child) is left alone
    parent = row(workflow, scene["owner"], "running")
    child = row(workflow, scene["owner"], "running", parent=parent)
    assert client.post(f"{URL}/{child.uuid}/stop", headers=scene["headers"]).status_code == 200
    assert stored(child.uuid).status == "cancelled"
    assert stored(parent.uuid).status == "running"

    # a parent waiting on something else (a timer at node "pause") is left alone too
    parent = row(workflow, scene["owner"], "waiting")
    parent.execution_data.meta = {"running_node": "pause"}
    db.session.commit()
    child = row(workflow, scene["owner"], "running", parent=parent)
    assert client.post(f"{URL}/{child.uuid}/stop", headers=scene["headers"]).status_code == 200
    assert stored(parent.uuid).status == "waiting"


def test_stopping_a_parent_cancels_its_children(client, scene):
    for child_status in ("running", "pending", "waiting", "paused"):
        _stop_parent(client, scene, child_status)


def _stop_parent(client, scene, child_status):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    parent = row(workflow, scene["owner"], "waiting")
    child = row(workflow, scene["owner"], child_status, parent=parent)
    grandchild = row(workflow, scene["owner"], "pending", parent=child)
    done_child = row(workflow, scene["owner"], "completed", parent=parent)
    response = client.post(f"{URL}/{parent.uuid}/stop", headers=scene["headers"])
    assert response.status_code == 200, response.json
    assert response.json["data"]["status"] == "cancelled"
    assert stored(parent.uuid).status == "cancelled"
    assert stored(child.uuid).status == "cancelled"
    assert stored(grandchild.uuid).status == "cancelled"
    assert stored(done_child.uuid).status == "completed"


def test_stop_and_retry_permissions(client, scene):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    execution = row(workflow, scene["owner"], "pending")
    assert client.post(f"{URL}/{execution.uuid}/stop", headers=headers_for(scene["viewer"])).status_code == 403
    assert client.post(f"{URL}/{execution.uuid}/stop", headers=headers_for(scene["stranger"])).status_code == 404
    assert client.post(f"{URL}/{execution.uuid}/stop").status_code == 401
    assert client.post(f"{URL}/no-such-execution/stop", headers=scene["headers"]).status_code == 404
    assert stored(execution.uuid).status == "pending"
    assert events_of(execution.uuid) == []
    _retry_permissions(client, scene)


# -- retry -----------------------------------------------------------------------------------

def retry_graph() -> tuple[list[dict], list[dict]]:
    """manual -> a -> compute (divides by a live workflow variable) -> b."""
    nodes = [
        {"id": "start", "type": "manual", "parameters": {}},
        {"id": "a", "type": "set", "parameters": {"fields": {"x": "{{ trigger.x }}", "at": "{{ execution.uuid }}"}}},
        {"id": "compute", "type": "set", "parameters": {"fields": {"y": "{{ nodes.a.output.x // variables.divisor }}"}}},
        {"id": "b", "type": "set", "parameters": {"fields": {"z": "{{ nodes.compute.output.y + 1 }}",
                                                             "first_run": "{{ nodes.a.output.at }}"}}},
    ]
    edges = [{"id": "e1", "source": "start", "target": "a"}, {"id": "e2", "source": "a", "target": "compute"},
             {"id": "e3", "source": "compute", "target": "b"}]
    return nodes, edges


def test_retry_continues_from_the_failed_node(client, worker, redis_conn, scene):
    nodes, edges = retry_graph()
    workflow = make_workflow(scene["workspace"], scene["owner"], nodes=nodes, edges=edges,
                             variables={"divisor": 0})
    headers = scene["headers"]
    created = client.post(URL, json={"workflow_uuid": workflow.uuid, "input": {"x": 10}}, headers=headers)
    assert created.status_code == 201, created.json
    original_uuid = created.json["data"]["uuid"]
    assert follow_until(original_uuid, "execution.finished", worker=worker)["status"] == "failed"
    original = client.get(f"{URL}/{original_uuid}?with=workflowExecutionData", headers=headers).json["data"]
    assert original["status"] == "failed" and "compute" in original["error"]
    original_entries = {e["node_id"]: e for e in original["workflow_execution_data"][0]["workflow_data"]}
    assert original_entries["compute"]["status"] == "error"
    assert "b" not in original_entries

    # Fix the workflow's variable (read live at run time); the graph itself comes from the snapshot.
    fixed = client.put(f"/api/v1/workflows/{workflow.uuid}", json={"variables": {"divisor": 2}}, headers=headers)
    assert fixed.status_code == 200, fixed.json

    retried = client.post(f"{URL}/{original_uuid}/retry", headers=headers)
    assert retried.status_code == 201, retried.json
    new = retried.json["data"]
    assert new["mode"] == "retry" and new["retry_of"] == original_uuid and new["uuid"] != original_uuid
    assert follow_until(new["uuid"], "execution.finished", worker=worker)["status"] == "completed"

    done = client.get(f"{URL}/{new['uuid']}?with=workflowExecutionData", headers=headers).json["data"]
    assert done["status"] == "completed"
    entries = {e["node_id"]: e for e in done["workflow_execution_data"][0]["workflow_data"]}
    # nodes that succeeded the first time are reused as they were, not run again
    for node_id in ("start", "a"):
        assert entries[node_id] == original_entries[node_id], node_id
    assert entries["a"]["output"]["at"] == original_uuid
    assert entries["compute"]["status"] == "success" and entries["compute"]["output"] == {"y": 5}
    assert entries["b"]["output"] == {"z": 6, "first_run": original_uuid}
    assert done["output"] == {"b": {"z": 6, "first_run": original_uuid}}
    started = [e["node_id"] for e in events_of(new["uuid"]) if e["event"] == "node.started"]
    assert started == ["compute", "b"]

    again = client.get(f"{URL}/{original_uuid}", headers=headers).json["data"]
    assert again["retry_success_id"] == new["uuid"] and again["status"] == "failed"
    listed = client.get(f"{URL}?workflow_uuid={workflow.uuid}&mode=retry", headers=headers).json["data"]
    assert [item["uuid"] for item in listed] == [new["uuid"]]

    # the successful retry cannot be retried; the original can (a failed execution stays retryable)
    assert client.post(f"{URL}/{new['uuid']}/retry", headers=headers).status_code == 409


def test_retry_a_cancelled_execution(client, worker, scene):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    execution = service.create_execution(workflow, scene["owner"], mode="manual", input={"a": 1}, start=False)
    assert client.post(f"{URL}/{execution.uuid}/stop", headers=scene["headers"]).status_code == 200
    retried = client.post(f"{URL}/{execution.uuid}/retry", headers=scene["headers"])
    assert retried.status_code == 201, retried.json
    assert follow_until(retried.json["data"]["uuid"], "execution.finished", worker=worker)["status"] == "completed"
    assert stored(execution.uuid).retry_success_id == retried.json["data"]["uuid"]


def test_retry_is_409_unless_failed_or_cancelled(client, scene):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    statuses = ("completed", "running", "pending", "waiting", "paused")
    for status in statuses:
        execution = row(workflow, scene["owner"], status)
        response = client.post(f"{URL}/{execution.uuid}/retry", headers=scene["headers"])
        assert response.status_code == 409, (status, response.json)
        assert response.json["message"]
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowExecution)).scalar_one() == len(statuses)


def _retry_permissions(client, scene):
    workflow = make_workflow(scene["workspace"], scene["owner"])
    execution = row(workflow, scene["owner"], "failed")
    assert client.post(f"{URL}/{execution.uuid}/retry", headers=headers_for(scene["viewer"])).status_code == 403
    assert client.post(f"{URL}/{execution.uuid}/retry", headers=headers_for(scene["stranger"])).status_code == 404
    assert client.post(f"{URL}/{execution.uuid}/retry").status_code == 401
    assert client.post(f"{URL}/no-such-execution/retry", headers=scene["headers"]).status_code == 404
    assert stored(execution.uuid).retry_success_id is None
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowExecution)).scalar_one() == 2
