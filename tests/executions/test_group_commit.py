"""Group commit (docs/reliability.md): pure nodes' checkpoints may be batched, but a node with
side effects never starts before everything before it is checkpointed. Observed from the side
effect itself: the local HTTP target reads the execution's checkpoint from the database at the
moment each request arrives."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from sqlalchemy import create_engine, text

from tests.executions.test_webhook import hook_url, stored, wait_finished
from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.support.servers import http_url, send_json, serve_http


@pytest.fixture
def checkpoint_spy(test_settings):
    """A local HTTP target that records, per request, the stored checkpoint of the execution
    named in the ``X-Execution`` header: (node ids of the entries, running_node)."""
    engine = create_engine(test_settings["database_url"])
    seen: dict[str, tuple[list[str], str | None]] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            uuid, node = self.headers["X-Execution"], self.path.strip("/")
            with engine.connect() as conn:
                data, meta = conn.execute(text(
                    "SELECT d.workflow_data, d.metadata FROM workflow_execution_data d "
                    "JOIN workflow_executions e ON e.id = d.workflow_execution_id WHERE e.uuid = :uuid"
                ), {"uuid": uuid}).one()
            entries = json.loads(data) if isinstance(data, str) else data
            meta = json.loads(meta) if isinstance(meta, str) else meta
            with lock:
                seen[node] = ([entry["node_id"] for entry in entries], meta.get("running_node"))
            send_json(self)

        def log_message(self, *args) -> None:
            pass

    server = serve_http(Handler)
    yield http_url(server), seen
    server.shutdown()
    engine.dispose()


def _call(node_id: str, url: str) -> dict:
    return {"id": node_id, "type": "http_request", "parameters": {
        "url": f"{url}/{node_id}", "method": "GET",
        "headers": {"X-Execution": "{{ execution.uuid }}"}}}


def test_every_node_before_a_side_effect_is_checkpointed_when_it_happens(client, worker, checkpoint_spy):
    url, seen = checkpoint_spy
    owner = make_user()
    workspace = make_workspace(owner)
    chain = ["hook", "a", "b", "call1", "c", "d", "call2", "e"]
    nodes = [{"id": "hook", "type": "webhook", "parameters": {}}]
    for node_id in chain[1:]:
        nodes.append(_call(node_id, url) if node_id.startswith("call")
                     else {"id": node_id, "type": "set", "parameters": {"fields": {node_id: 1}, "keep_input": True}})
    edges = [{"id": f"e{i}", "source": source, "target": target} for i, (source, target) in enumerate(zip(chain, chain[1:]))]
    workflow = make_workflow(workspace, owner, nodes=nodes, edges=edges)

    response = client.post(hook_url(workflow), json={}, headers={"Authorization": f"Bearer {token_for(owner)}"})
    assert response.status_code == 202, response.json
    uuid = response.json["data"]["uuid"]
    assert wait_finished(uuid, worker)["status"] == "completed"

    # Pure nodes (a, b, c, d) may be batched, but each call saw every earlier node stored,
    # itself recorded as the running node: a crash from here on never repeats what came before.
    assert seen["call1"] == (["hook", "a", "b"], "call1")
    assert seen["call2"] == (["hook", "a", "b", "call1", "c", "d"], "call2")
    assert [entry["node_id"] for entry in stored(uuid).execution_data.workflow_data] == chain
