from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.support.servers import wait_for


def test_manual_execution_runs_on_real_worker(client, worker):
    user = make_user()
    workspace = make_workspace(user)
    workflow = make_workflow(workspace, user)
    headers = headers_for(user)
    created = client.post("/api/v1/workflow-executions", json={"workflow_uuid": workflow.uuid, "input": {"a": 1}},
                          headers=headers)
    assert created.status_code == 201, created.json
    uuid = created.json["data"]["uuid"]

    def finished():
        body = client.get(f"/api/v1/workflow-executions/{uuid}?with=workflowExecutionData", headers=headers).json
        return body["data"] if body["data"]["is_finished"] else None

    data = wait_for(finished, timeout=60, message="execution to finish:\n" + worker.read_log())
    assert data["status"] == "completed", data
    entries = data["workflow_execution_data"][0]["workflow_data"]
    assert [e["node_id"] for e in entries] == ["start", "n1"]
    assert entries[1]["output"] == {"i": 1}
