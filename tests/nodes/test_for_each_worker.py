"""The ``for_each`` node through the real API and RQ worker: stored progress metadata and output."""
from __future__ import annotations

from typing import Any

from athena.runs.eventlog import event_log_for_app, stream_key
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.support.servers import wait_for

NODES = [
    {"id": "start", "type": "manual", "parameters": {}},
    {"id": "each", "type": "for_each",
     "parameters": {"items": "{{ trigger.numbers }}", "concurrency": 2}},
    {"id": "double", "type": "set", "parameters": {"fields": {"n": "{{ item * 2 }}"}}},
    {"id": "label", "type": "set",
     "parameters": {"fields": {"label": "{{ loop.index }}/{{ loop.length }}: {{ input.n }}"}}},
    {"id": "after", "type": "set", "parameters": {"fields": {"count": "{{ input | length }}",
                                                             "all": "{{ input }}"}}},
]
EDGES = [
    {"id": "e1", "source": "start", "target": "each"},
    {"id": "e2", "source": "each", "target": "double", "source_handle": "item"},
    {"id": "e3", "source": "double", "target": "label"},
    {"id": "e4", "source": "each", "target": "after", "source_handle": "done"},
]


def test_for_each_on_real_worker_records_loop_progress(client, worker):
    user = make_user()
    workflow = make_workflow(make_workspace(user), user, nodes=NODES, edges=EDGES)
    headers = headers_for(user)
    created = client.post("/api/v1/workflow-executions",
                          json={"workflow_uuid": workflow.uuid, "input": {"numbers": [1, 2, 3]}},
                          headers=headers)
    assert created.status_code == 201, created.json
    uuid = created.json["data"]["uuid"]

    def finished() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/workflow-executions/{uuid}?with=workflowExecutionData",
                          headers=headers).json
        return body["data"] if body["data"]["is_finished"] else None

    data = wait_for(finished, timeout=60, message="execution to finish:\n" + worker.read_log())
    assert data["status"] == "completed", data
    results = [{"label": "1/3: 2"}, {"label": "2/3: 4"}, {"label": "3/3: 6"}]
    assert data["output"] == {"after": {"count": 3, "all": results}}

    stored = data["workflow_execution_data"][0]
    meta = stored["metadata"]
    assert meta["loop_index"] == 3
    assert meta["processed_count"] == 1 + 1 + 2 * 3 + 1  # start, each, 2 body nodes x 3, after
    assert meta["error_count"] == 0
    entries = {e["node_id"]: e for e in stored["workflow_data"]}
    assert [e["node_id"] for e in stored["workflow_data"]] == ["start", "each", "double",
                                                               "label", "after"]
    assert entries["each"]["status"] == "success" and entries["each"]["output"] == results
    assert entries["label"]["output"] == results[-1]  # body nodes keep their last iteration

    log = event_log_for_app().read_after(stream_key(uuid), 0, count=10_000)
    progress = [(e["index"], e["processed"]) for e in log if e["event"] == "node.progress"]
    assert progress == [(1, 1), (2, 2), (3, 3)]
    label_runs = [e.get("iteration") for e in log
                  if e["event"] == "node.finished" and e["node_id"] == "label"]
    assert label_runs == [1, 2, 3]
