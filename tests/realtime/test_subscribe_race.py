"""Issue 6 item 5: executions started concurrently, each watched by a WebSocket opened right
after its trigger: every client sees `running` and the final event, in order, with consecutive seq."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.factories import linear_graph, make_user, make_workflow, make_workspace, token_for
from tests.realtime.support import Reader, execution_url

COUNT = 50


@pytest.mark.slow
def test_fifty_concurrent_executions_each_watched_immediately(live_server, worker):
    user = make_user()
    workspace = make_workspace(user)
    nodes, edges = linear_graph(4, trigger="webhook")
    workflow = make_workflow(workspace, user, nodes=nodes, edges=edges)
    token = token_for(user)
    workflow_uuid = workflow.uuid  # plain values for the threads (no app context there)
    session = requests.Session()

    def trigger_and_watch(i: int) -> Reader:
        response = session.post(f"{live_server.url}/api/v1/workflows/{workflow_uuid}/webhook", json={"i": i},
                                headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert response.status_code == 202, response.text
        return Reader(execution_url(live_server.ws_url, response.json()["data"]["uuid"], token=token)).start()

    with ThreadPoolExecutor(max_workers=16) as pool:
        readers = list(pool.map(trigger_and_watch, range(COUNT)))
    complete = 0
    for reader in readers:
        reader.finish()
        events = reader.events
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        statuses = [e["status"] for e in events if e["event"] == "execution.status"]
        assert statuses == ["pending", "running", "completed"]
        assert events[-1]["event"] == "execution.finished" and events[-1]["status"] == "completed"
        # (the close frame itself may be lost when the server drops the socket right after sending
        # it under load; every event, the final one included, has arrived in order above)
        complete += 1
    assert complete == COUNT
