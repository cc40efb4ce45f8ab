"""PUT/PATCH /workflow-executions/{uuid} (only the client-editable flags) and DELETE (soft)."""
from __future__ import annotations

import pytest

from athena.extensions import db
from athena.models import WorkflowExecution, WorkflowExecutionData
from tests.factories import headers_for, make_user, make_workflow, make_workspace

URL = "/api/v1/workflow-executions"
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def scene():
    owner, viewer, editor, stranger = make_user(), make_user(), make_user(), make_user()
    workspace = make_workspace(owner, members={viewer: "viewer", editor: "editor"})
    workflow = make_workflow(workspace, owner)
    make_workspace(stranger)
    return {"owner": owner, "viewer": viewer, "editor": editor, "stranger": stranger, "workflow": workflow,
            "headers": headers_for(owner)}


def _row(workflow, user, status: str) -> WorkflowExecution:
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workflow.workspace_id, user_id=user.id,
                                  status=status, mode="manual", is_finished=status in TERMINAL,
                                  output={"done": True} if status == "completed" else None)
    db.session.add(execution)
    db.session.flush()
    db.session.add(WorkflowExecutionData(workflow_execution_id=execution.id, workflow_data=[], meta={}, data={}))
    db.session.commit()
    return execution


def _snapshot(execution_id: int) -> dict:
    db.session.expire_all()
    row = db.session.get(WorkflowExecution, execution_id)
    return {column: getattr(row, column) for column in (
        "id", "uuid", "status", "is_finished", "workflow_id", "workspace_id", "mode", "retry_of", "output",
        "error", "requires_human_review", "has_command_room_task", "started_at", "stopped_at", "deleted_at")}


def test_update_changes_only_the_editable_flags(client, scene):
    for method in ("put", "patch"):
        _update_flags(client, scene, method)


def _update_flags(client, scene, method):
    execution = _row(scene["workflow"], scene["owner"], "completed")
    before = _snapshot(execution.id)
    send = getattr(client, method)
    response = send(f"{URL}/{execution.uuid}", json={"requires_human_review": True}, headers=scene["headers"])
    assert response.status_code == 200, response.json
    assert response.json["data"]["requires_human_review"] is True
    assert response.json["data"]["has_command_room_task"] is False
    assert response.json["data"]["status"] == "completed"
    after = _snapshot(execution.id)
    assert after == {**before, "requires_human_review": True}

    response = send(f"{URL}/{execution.uuid}", json={"has_command_room_task": True, "requires_human_review": False},
                    headers=scene["headers"])
    assert response.status_code == 200, response.json
    assert _snapshot(execution.id) == {**before, "has_command_room_task": True}

    # an empty body changes nothing
    assert send(f"{URL}/{execution.uuid}", json={}, headers=scene["headers"]).status_code == 200
    assert _snapshot(execution.id) == {**before, "has_command_room_task": True}


REJECTED_BODIES = [
    {"status": "completed"},
    {"is_finished": True},
    {"id": 999},
    {"uuid": "00000000-0000-0000-0000-000000000000"},
    {"workflow_id": 1},
    {"output": {"forged": True}},
    {"stopped_at": "2025-01-01T00:00:00Z"},
    {"requires_human_review": True, "status": "completed"},  # nothing of a rejected body is applied
    {"requires_human_review": "perhaps"},
    {"has_command_room_task": None},
    [{"requires_human_review": True}],
]


def test_update_rejects_everything_else(client, scene):
    execution = _row(scene["workflow"], scene["owner"], "running")
    before = _snapshot(execution.id)
    for method in ("put", "patch"):
        for body in REJECTED_BODIES:
            response = getattr(client, method)(f"{URL}/{execution.uuid}", json=body, headers=scene["headers"])
            assert response.status_code == 422, (method, body, response.status_code, response.json)
            assert "message" in response.json and response.json["errors"], (method, body)
            assert _snapshot(execution.id) == before, (method, body)


def test_update_and_delete_permissions(client, scene):
    execution = _row(scene["workflow"], scene["owner"], "completed")
    body = {"requires_human_review": True}
    assert client.put(f"{URL}/{execution.uuid}", json=body,
                      headers=headers_for(scene["viewer"])).status_code == 403
    assert client.patch(f"{URL}/{execution.uuid}", json=body,
                        headers=headers_for(scene["stranger"])).status_code == 404
    assert _snapshot(execution.id)["requires_human_review"] is False
    assert client.patch(f"{URL}/{execution.uuid}", json=body,
                        headers=headers_for(scene["editor"])).status_code == 200
    assert client.put(f"{URL}/no-such-execution", json=body, headers=scene["headers"]).status_code == 404
    _delete_permissions(client, scene)


def test_delete_a_finished_execution_is_soft(client, scene):
    other = _row(scene["workflow"], scene["owner"], "completed")
    for status in TERMINAL:
        _delete_finished(client, scene, status, other)


def _delete_finished(client, scene, status, other):
    execution = _row(scene["workflow"], scene["owner"], status)
    headers = scene["headers"]
    response = client.delete(f"{URL}/{execution.uuid}", headers=headers)
    assert response.status_code == 204, response.json

    db.session.expire_all()
    row = db.session.get(WorkflowExecution, execution.id)
    assert row is not None and row.deleted_at is not None and row.status == status
    assert row.execution_data is not None and row.execution_data.deleted_at is not None

    assert client.get(f"{URL}/{execution.uuid}", headers=headers).status_code == 404
    listed = client.get(f"{URL}?workflow_uuid={scene['workflow'].uuid}", headers=headers).json
    assert [item["uuid"] for item in listed["data"]] == [other.uuid]
    assert listed["meta"]["total"] == 1
    workflow = client.get(f"/api/v1/workflows/{scene['workflow'].uuid}", headers=headers).json["data"]
    assert workflow["executions_count"] == 1
    # deleting twice, stopping, retrying or updating a deleted execution: it is gone
    assert client.delete(f"{URL}/{execution.uuid}", headers=headers).status_code == 404
    assert client.post(f"{URL}/{execution.uuid}/retry", headers=headers).status_code == 404
    assert client.patch(f"{URL}/{execution.uuid}", json={"requires_human_review": True},
                        headers=headers).status_code == 404


def test_delete_an_unfinished_execution_is_409(client, scene):
    for status in ("pending", "running", "waiting", "paused"):
        execution = _row(scene["workflow"], scene["owner"], status)
        response = client.delete(f"{URL}/{execution.uuid}", headers=scene["headers"])
        assert response.status_code == 409, (status, response.json)
        assert response.json["message"]
        row = _snapshot(execution.id)
        assert row["deleted_at"] is None and row["status"] == status
        assert client.get(f"{URL}/{execution.uuid}", headers=scene["headers"]).status_code == 200


def _delete_permissions(client, scene):
    execution = _row(scene["workflow"], scene["owner"], "completed")
    assert client.delete(f"{URL}/{execution.uuid}", headers=headers_for(scene["viewer"])).status_code == 403
    assert client.delete(f"{URL}/{execution.uuid}", headers=headers_for(scene["stranger"])).status_code == 404
    assert _snapshot(execution.id)["deleted_at"] is None
    assert client.delete(f"{URL}/{execution.uuid}").status_code == 401


def test_every_answer_names_the_parent(client, scene):
    """parent_execution_uuid is the parent's uuid in GET, PUT, PATCH and the stop answer alike."""
    parent = _row(scene["workflow"], scene["owner"], "waiting")
    child = _row(scene["workflow"], scene["owner"], "running")
    child.parent_execution_id, child.mode = parent.id, "child"
    db.session.commit()
    child_uuid, parent_uuid = child.uuid, parent.uuid
    answers = {
        "GET": client.get(f"{URL}/{child_uuid}", headers=scene["headers"]),
        "PUT": client.put(f"{URL}/{child_uuid}", json={"requires_human_review": True}, headers=scene["headers"]),
        "PATCH": client.patch(f"{URL}/{child_uuid}", json={"has_command_room_task": True}, headers=scene["headers"]),
        "stop": client.post(f"{URL}/{child_uuid}/stop", headers=scene["headers"]),
    }
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.json)
        assert response.json["data"]["parent_execution_uuid"] == parent_uuid, name
    assert answers["stop"].json["data"]["status"] == "cancelled"
    listed = client.get(f"{URL}?workflow_uuid={scene['workflow'].uuid}", headers=scene["headers"]).json["data"]
    assert {row["uuid"]: row["parent_execution_uuid"] for row in listed} == {child_uuid: parent_uuid,
                                                                            parent_uuid: None}
