"""``?wait=true`` and ``timeout=`` are the webhook's own parameters: not in the trigger's ``query``.
And a failed run waited for answers 200 with the execution, whose status says ``failed``
(docs/api.md, "Waiting for the answer")."""
from __future__ import annotations

import pytest

from athena.extensions import db
from athena.models import WorkflowExecution
from tests.executions.test_webhook import hook_url, trigger_entry, wait_finished, webhook_graph
from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.support.servers import free_port


@pytest.fixture
def owner():
    user = make_user()
    return user, make_workspace(user), {"Authorization": f"Bearer {token_for(user)}"}


def _pure_workflow(owner):
    user, workspace, _ = owner
    nodes, edges = webhook_graph()  # webhook -> set: runs inline with wait=true
    return make_workflow(workspace, user, nodes=nodes, edges=edges)


def test_wait_true_is_not_in_the_trigger_query(client, owner):
    response = client.post(hook_url(_pure_workflow(owner), "wait=true&source=x"), json={"email": "a@example.com"},
                           headers=owner[2])
    assert response.status_code == 200, response.json
    assert trigger_entry(response.json["data"]["uuid"])["output"]["query"] == {"source": "x"}
    assert response.json["data"]["output"] == {"echo": {"email": "a@example.com", "source": "x"}}


def test_timeout_is_not_in_the_trigger_query_on_the_worker_path_either(client, worker, owner):
    user, workspace, headers = owner
    workflow = make_workflow(workspace, user, nodes=[  # respond_to_webhook is not pure: a worker runs it
        {"id": "hook", "type": "webhook", "parameters": {}},
        {"id": "answer", "type": "respond_to_webhook", "parameters": {"body": {"query": "{{ trigger.query }}"}}},
    ], edges=[{"id": "e1", "source": "hook", "target": "answer"}])
    response = client.post(hook_url(workflow, "wait=true&timeout=60&source=x&tag=a"), json={}, headers=headers)
    assert response.status_code == 200, response.data
    assert response.json == {"query": {"source": "x", "tag": "a"}}
    execution = db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.workflow_id == workflow.id)
                                   ).scalar_one()
    assert execution.input["query"] == {"source": "x", "tag": "a"}


def test_without_wait_every_query_parameter_but_timeout_is_passed_on(client, worker, owner):
    response = client.post(hook_url(_pure_workflow(owner), "source=x&timeout=5&other=1"), json={}, headers=owner[2])
    assert response.status_code == 202, response.json
    uuid = response.json["data"]["uuid"]
    assert wait_finished(uuid, worker)["status"] == "completed"
    assert trigger_entry(uuid)["output"]["query"] == {"source": "x", "other": "1"}


def test_a_failed_run_waited_for_answers_200_with_status_failed(client, worker, owner):
    user, workspace, headers = owner
    inline = make_workflow(workspace, user, nodes=[
        {"id": "hook", "type": "webhook", "parameters": {}},
        {"id": "boom", "type": "stop_and_error", "parameters": {"message": "no {{ trigger.query.source }}"}},
    ], edges=[{"id": "e1", "source": "hook", "target": "boom"}])
    response = client.post(hook_url(inline, "wait=true&source=x"), json={}, headers=headers)
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["status"] == "failed" and data["is_finished"] is True and data["error"] == "node 'boom': no x", data

    # On a worker (an HTTP request is not a pure node): a request to a closed port fails the run.
    on_worker = make_workflow(workspace, user, nodes=[
        {"id": "hook", "type": "webhook", "parameters": {}},
        {"id": "call", "type": "http_request", "parameters": {"url": f"http://127.0.0.1:{free_port()}/"}},
    ], edges=[{"id": "e1", "source": "hook", "target": "call"}])
    response = client.post(hook_url(on_worker, "wait=true&timeout=60"), json={}, headers=headers)
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["status"] == "failed" and data["is_finished"] is True and data["error"], data
