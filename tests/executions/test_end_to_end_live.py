"""Issue 3 must-show: a 6-node branching workflow triggered by webhook runs on the real RQ worker;
a WebSocket client watching before the trigger and one connecting after the run receive the same
complete, ordered event sequence; GET shows every node's entry."""
from __future__ import annotations

import requests

from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.realtime.support import Reader, execution_url, workspace_url

NODES = [
    {"id": "hook", "type": "webhook"},
    {"id": "normalize", "type": "set", "parameters": {"fields": {
        "email": "{{ trigger.body.email | lower }}", "amount": "{{ trigger.body.amount * 2 }}"}}},
    {"id": "is_big", "type": "if", "parameters": {"condition": "{{ nodes.normalize.output.amount > 100 }}"}},
    {"id": "vip", "type": "set", "parameters": {"fields": {"tier": "vip", "who": "{{ nodes.normalize.output.email }}"}}},
    {"id": "regular", "type": "set", "parameters": {"fields": {"tier": "regular"}}},
    {"id": "done", "type": "set", "parameters": {"fields": {"finished": True}}},
]
EDGES = [
    {"id": "e1", "source": "hook", "target": "normalize"},
    {"id": "e2", "source": "normalize", "target": "is_big"},
    {"id": "e3", "source": "is_big", "target": "vip", "source_handle": "true"},
    {"id": "e4", "source": "is_big", "target": "regular", "source_handle": "false"},
    {"id": "e5", "source": "vip", "target": "done"},
    {"id": "e6", "source": "regular", "target": "done"},
]


def _strip(events):
    return [{k: v for k, v in e.items()} for e in events]


def test_webhook_run_watched_live_before_and_after(live_server, worker):
    user = make_user()
    workspace = make_workspace(user)
    workflow = make_workflow(workspace, user, nodes=NODES, edges=EDGES)
    token = token_for(user)
    headers = {"Authorization": f"Bearer {token}"}

    # Client 1 watches the workspace before anything is triggered ...
    watcher = Reader(workspace_url(live_server.ws_url, workspace.uuid, token=token)).start()
    watcher.snapshot
    response = requests.post(f"{live_server.url}/api/v1/workflows/{workflow.uuid}/webhook",
                             json={"email": "ADA@Example.com", "amount": 70}, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    uuid = response.json()["data"]["uuid"]
    # ... learns of the new execution from the workspace channel, and follows it at once.
    watcher.wait(lambda: any(e.get("execution_uuid") == uuid for e in watcher.events), "pending event")
    early = Reader(execution_url(live_server.ws_url, uuid, token=token)).start()
    early.finish()
    assert early.close_code == 1000

    # Client 2 connects after the run has finished.
    late = Reader(execution_url(live_server.ws_url, uuid, token=token)).start().finish()
    assert late.close_code == 1000
    assert _strip(early.events) == _strip(late.events)
    events = early.events
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [(e["event"], e.get("node_id"), e.get("status")) for e in events]
    assert kinds[0] == ("execution.status", None, "pending")
    assert kinds[1] == ("execution.status", None, "running")
    ran = [node for event, node, _ in kinds if event == "node.started"]
    assert ran == ["hook", "normalize", "is_big", "vip", "done"]
    finished = {node: status for event, node, status in kinds if event == "node.finished"}
    assert finished == {"hook": "success", "normalize": "success", "is_big": "success", "vip": "success",
                        "regular": "skipped", "done": "success"}
    assert kinds[-2:] == [("execution.status", None, "completed"), ("execution.finished", None, "completed")]

    # The workspace channel saw the status changes of this execution in order.
    watcher.wait(lambda: any(e["event"] == "execution.finished" for e in watcher.events), "finish on workspace")
    statuses = [e["status"] for e in watcher.events if e["event"] == "execution.status" and e["execution_uuid"] == uuid]
    assert statuses == ["pending", "running", "completed"]
    watcher.close()

    body = requests.get(f"{live_server.url}/api/v1/workflow-executions/{uuid}?with=workflowExecutionData",
                        headers=headers, timeout=30).json()["data"]
    assert body["status"] == "completed" and body["is_finished"] is True
    entries = {e["node_id"]: e for e in body["workflow_execution_data"][0]["workflow_data"]}
    assert set(entries) == {n["id"] for n in NODES}
    assert entries["normalize"]["output"] == {"email": "ada@example.com", "amount": 140}
    assert entries["vip"]["output"] == {"tier": "vip", "who": "ada@example.com"}
    assert entries["regular"]["status"] == "skipped"
    for entry in entries.values():
        assert entry["started_at"].endswith("Z") and entry["stopped_at"].endswith("Z")
    metadata = body["workflow_execution_data"][0]["metadata"]
    assert metadata["processed_count"] == 5 and metadata["error_count"] == 0
    assert body["output"] == {"done": {"finished": True}}
