"""POST /api/v1/workflows/{uuid}/webhook through the real RQ worker."""
from __future__ import annotations

import json

import pytest

from athena.runs.eventlog import event_log_for_app, stream_key
from athena.extensions import db
from athena.models import Workflow, WorkflowExecution
from tests.factories import headers_for, linear_graph, make_user, make_workflow, make_workspace, token_for

EXEC_URL = "/api/v1/workflow-executions"
SAFETY = 60  # seconds: a bound on waits, never a timing assertion


def hook_url(workflow, query: str = "") -> str:
    return f"/api/v1/workflows/{workflow.uuid}/webhook" + (f"?{query}" if query else "")


def webhook_graph() -> tuple[list[dict], list[dict]]:
    nodes = [
        {"id": "hook", "type": "webhook", "parameters": {}},
        {"id": "echo", "type": "set", "parameters": {"fields": {
            "email": "{{ trigger.body.get('email') if trigger.body is mapping else none }}",
            "source": "{{ trigger.query.get('source') }}",
        }}},
    ]
    return nodes, [{"id": "e1", "source": "hook", "target": "echo"}]


def wait_finished(uuid: str, worker) -> dict:
    """Follow the execution's event log to execution.finished; returns that event."""
    for event in event_log_for_app().follow(stream_key(uuid), 0, SAFETY):
        if event["event"] == "execution.finished":
            return event
    raise AssertionError(f"execution {uuid} did not finish:\n{worker.read_log()[-3000:]}")


def stored(uuid: str) -> WorkflowExecution:
    db.session.expire_all()
    return db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid == uuid)).scalar_one()


def trigger_entry(uuid: str) -> dict:
    entries = stored(uuid).execution_data.workflow_data
    return next(entry for entry in entries if entry["node_id"] == "hook")


@pytest.fixture
def scene():
    owner, viewer, stranger = make_user(), make_user(), make_user()
    workspace = make_workspace(owner, members={viewer: "viewer"})
    make_workspace(stranger)
    nodes, edges = webhook_graph()
    workflow = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    return {"owner": owner, "viewer": viewer, "stranger": stranger, "workspace": workspace, "workflow": workflow,
            "token": token_for(owner)}


def test_json_body_query_and_custom_header(client, worker, scene):
    token = scene["token"]
    response = client.post(hook_url(scene["workflow"], "source=crm&tag=a"), json={"email": "a@example.com", "n": 1},
                           headers={"Authorization": f"Bearer {token}", "X-Custom-Thing": "yes",
                                    "Cookie": "session=secret-cookie"})
    assert response.status_code == 202, response.json
    data = response.json["data"]
    assert data["status"] == "pending" and data["is_finished"] is False and data["mode"] == "webhook"
    assert data["workflow_uuid"] == scene["workflow"].uuid

    finished = wait_finished(data["uuid"], worker)
    assert finished["status"] == "completed", finished
    entry = trigger_entry(data["uuid"])
    output = entry["output"]
    assert set(output) == {"body", "query", "headers"}
    assert output["body"] == {"email": "a@example.com", "n": 1}
    assert output["query"] == {"source": "crm", "tag": "a"}
    assert output["headers"]["x-custom-thing"] == "yes"
    assert output["headers"]["content-type"] == "application/json"
    for hidden in ("authorization", "cookie", "x-multiplai-authorization"):
        assert hidden not in output["headers"]
    row = stored(data["uuid"])
    assert token not in json.dumps(row.input) and token not in json.dumps(row.execution_data.workflow_data)
    assert "secret-cookie" not in json.dumps(row.input)
    assert row.output == {"echo": {"email": "a@example.com", "source": "crm"}}

    # authenticated with an app token instead: that header is not stored either
    app_token = token_for(scene["owner"], kind="app")
    response = client.post(hook_url(scene["workflow"]), json={"email": "b@example.com"},
                           headers={"X-Multiplai-Authorization": app_token})
    assert response.status_code == 202, response.json
    wait_finished(response.json["data"]["uuid"], worker)
    output = trigger_entry(response.json["data"]["uuid"])["output"]
    assert "x-multiplai-authorization" not in output["headers"]
    assert app_token not in json.dumps(stored(response.json["data"]["uuid"]).input)


def test_form_body_and_query_string_only(client, worker, scene):
    response = client.post(hook_url(scene["workflow"]), data={"email": "form@example.com", "plan": "pro"},
                           headers={"Authorization": f"Bearer {scene['token']}"})
    assert response.status_code == 202, response.json
    uuid = response.json["data"]["uuid"]
    assert wait_finished(uuid, worker)["status"] == "completed"
    output = trigger_entry(uuid)["output"]
    assert output["body"] == {"email": "form@example.com", "plan": "pro"}
    assert output["query"] == {}
    assert output["headers"]["content-type"].startswith("application/x-www-form-urlencoded")
    assert stored(uuid).output == {"echo": {"email": "form@example.com", "source": None}}

    response = client.post(hook_url(scene["workflow"], "source=cron&id=7"),
                           headers={"Authorization": f"Bearer {scene['token']}"})
    assert response.status_code == 202, response.json
    uuid = response.json["data"]["uuid"]
    assert wait_finished(uuid, worker)["status"] == "completed"
    output = trigger_entry(uuid)["output"]
    assert output["body"] is None
    assert output["query"] == {"source": "cron", "id": "7"}
    assert stored(uuid).output == {"echo": {"email": None, "source": "cron"}}


def test_wait_true_answers_with_the_finished_execution(client, worker, scene):
    response = client.post(hook_url(scene["workflow"], "wait=true&source=sync"), json={"email": "w@example.com"},
                           headers={"Authorization": f"Bearer {scene['token']}"})
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["status"] == "completed" and data["is_finished"] is True
    assert data["output"] == {"echo": {"email": "w@example.com", "source": "sync"}}
    assert data["stopped_at"] is not None


def test_wait_with_a_short_timeout_on_a_long_chain(client, worker, scene):
    owner = scene["owner"]
    nodes, edges = linear_graph(2000, trigger="webhook")
    workflow = make_workflow(scene["workspace"], owner, nodes=nodes, edges=edges)
    headers = {"Authorization": f"Bearer {scene['token']}"}
    response = client.post(hook_url(workflow, "wait=true&timeout=0.2"), json={}, headers=headers)
    assert response.status_code in (200, 202), response.json
    data = response.json["data"]
    if response.status_code == 202:
        assert data["is_finished"] is False and data["status"] in ("pending", "running"), data
    else:
        assert data["is_finished"] is True and data["status"] == "completed", data
    # Free the (single) worker: stop the long chain and wait until its job is over.
    if not stored(data["uuid"]).is_finished:
        stop = client.post(f"{EXEC_URL}/{data['uuid']}/stop", headers=headers)
        assert stop.status_code in (200, 409), stop.json
    assert wait_finished(data["uuid"], worker)["status"] in ("cancelled", "completed")


def test_refusals_create_nothing(client, scene):
    _bad_timeouts_are_422(client, scene)
    _permissions(client, scene)
    _inactive_workflow_is_409(client, scene)


def _bad_timeouts_are_422(client, scene):
    headers = {"Authorization": f"Bearer {scene['token']}"}
    for query in ("wait=true&timeout=0", "wait=true&timeout=-1", "wait=true&timeout=100000", "wait=maybe"):
        assert client.post(hook_url(scene["workflow"], query), json={}, headers=headers).status_code == 422, query
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowExecution)).scalar_one() == 0


def _inactive_workflow_is_409(client, scene):
    workflow = scene["workflow"]
    workflow.is_active = False
    db.session.commit()
    response = client.post(hook_url(workflow), json={"a": 1}, headers={"Authorization": f"Bearer {scene['token']}"})
    assert response.status_code == 409, response.json
    assert response.json["message"]
    db.session.expire_all()
    assert db.session.get(Workflow, workflow.id).trigger_count == 0
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowExecution)).scalar_one() == 0


def _permissions(client, scene):
    workflow = scene["workflow"]
    assert client.post(hook_url(workflow), json={}, headers=headers_for(scene["viewer"])).status_code == 403
    assert client.post(hook_url(workflow), json={}, headers=headers_for(scene["stranger"])).status_code == 404
    assert client.post(hook_url(workflow), json={}).status_code == 401
    assert client.post("/api/v1/workflows/no-such-workflow/webhook", json={},
                       headers={"Authorization": f"Bearer {scene['token']}"}).status_code == 404
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowExecution)).scalar_one() == 0


def test_trigger_count_and_last_used_at(client, worker, scene):
    workflow = scene["workflow"]
    headers = {"Authorization": f"Bearer {scene['token']}"}
    before = client.get(f"/api/v1/workflows/{workflow.uuid}", headers=headers).json["data"]
    assert before["trigger_count"] == 0 and before["last_used_at"] is None
    uuids = []
    for n in range(3):
        response = client.post(hook_url(workflow), json={"n": n}, headers=headers)
        assert response.status_code == 202
        uuids.append(response.json["data"]["uuid"])
    for uuid in uuids:
        wait_finished(uuid, worker)
    after = client.get(f"/api/v1/workflows/{workflow.uuid}", headers=headers).json["data"]
    assert after["trigger_count"] == 3
    assert after["last_used_at"] is not None and after["last_used_at"].endswith("Z")
    assert after["last_used_at"] >= min(item["created_at"] for item in
                                        client.get(f"{EXEC_URL}?workflow_uuid={workflow.uuid}",
                                                   headers=headers).json["data"])
    assert after["executions_count"] == 3 and after["executions_completed_count"] == 3
