"""Issue 13, items 1-2, through the real paths: a `?wait=true` call run inline in the API process
and a queued run on the real RQ worker. The doubling bomb fails its node naming the size limit
with memory bounded (RSS before/after printed to the test log); a CPU-bound node with
`settings.timeout: 1` fails with a timeout; each process then serves the next request."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.engine.test_expression_budget import BIG_PRODUCTS, DOUBLING
from tests.executions.test_webhook import hook_url, stored, wait_finished
from tests.factories import make_user, make_workflow, make_workspace, token_for


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _graph(expression: str, settings: dict | None = None) -> tuple[list[dict], list[dict]]:
    burn = {"id": "burn", "type": "set", "parameters": {"fields": {"x": expression}}}
    if settings:
        burn["settings"] = settings
    return [{"id": "hook", "type": "webhook", "parameters": {}}, burn], [{"id": "e1", "source": "hook", "target": "burn"}]


@pytest.fixture
def scene():
    owner = make_user()
    workspace = make_workspace(owner)
    flows = {
        "bomb": make_workflow(workspace, owner, *_graph(DOUBLING)),
        "burn": make_workflow(workspace, owner, *_graph(BIG_PRODUCTS, {"timeout": 1})),
        "fine": make_workflow(workspace, owner, *_graph("{{ trigger.body.n + 1 }}")),
    }
    return {"flows": flows, "headers": {"Authorization": f"Bearer {token_for(owner)}"}}


def _burn_error(uuid: str) -> str:
    row = stored(uuid)
    entry = next(e for e in row.execution_data.workflow_data if e["node_id"] == "burn")
    assert (row.status, entry["status"]) == ("failed", "error"), (row.status, entry)
    return entry["error"]


def _serves_the_next_request(client, scene, *, wait: bool, worker=None) -> None:
    query = "wait=true" if wait else ""
    response = client.post(hook_url(scene["flows"]["fine"], query), json={"n": 41}, headers=scene["headers"])
    assert response.status_code in (200, 202), response.json
    if not wait:
        assert wait_finished(response.json["data"]["uuid"], worker)["status"] == "completed"
    assert stored(response.json["data"]["uuid"]).output == {"burn": {"x": 42}}


def test_inline_the_doubling_bomb_fails_naming_the_size_limit(client, scene):
    before = _memory(os.getpid())
    response = client.post(hook_url(scene["flows"]["bomb"], "wait=true"), json={}, headers=scene["headers"])
    after = _memory(os.getpid())
    print(f"API process (inline run) KiB before {before}, after {after}")
    assert response.status_code == 200, response.json
    assert response.json["data"]["status"] == "failed"
    assert "ATHENA_EXPRESSION_MAX_VALUE_SIZE" in _burn_error(response.json["data"]["uuid"])
    _serves_the_next_request(client, scene, wait=True)


def test_inline_a_cpu_bound_node_fails_at_its_timeout(client, scene):
    response = client.post(hook_url(scene["flows"]["burn"], "wait=true&timeout=60"), json={}, headers=scene["headers"])
    assert response.status_code == 200, response.json
    assert "node 'burn' timed out: its settings.timeout of 1 seconds passed" in _burn_error(response.json["data"]["uuid"])
    _serves_the_next_request(client, scene, wait=True)


def test_on_a_worker_the_doubling_bomb_fails_naming_the_size_limit(client, worker, scene):
    _serves_the_next_request(client, scene, wait=False, worker=worker)  # a warm worker: its RSS is its working size
    before = _memory(worker.process.pid)
    response = client.post(hook_url(scene["flows"]["bomb"]), json={}, headers=scene["headers"])
    assert response.status_code == 202, response.json
    uuid = response.json["data"]["uuid"]
    assert wait_finished(uuid, worker)["status"] == "failed"
    after = _memory(worker.process.pid)
    print(f"worker process KiB before {before}, after {after}")
    assert "ATHENA_EXPRESSION_MAX_VALUE_SIZE" in _burn_error(uuid)
    _serves_the_next_request(client, scene, wait=False, worker=worker)


def test_on_a_worker_a_cpu_bound_node_fails_at_its_timeout(client, worker, scene):
    response = client.post(hook_url(scene["flows"]["burn"]), json={}, headers=scene["headers"])
    assert response.status_code == 202, response.json
    uuid = response.json["data"]["uuid"]
    assert wait_finished(uuid, worker)["status"] == "failed"
    assert "node 'burn' timed out: its settings.timeout of 1 seconds passed" in _burn_error(uuid)
    _serves_the_next_request(client, scene, wait=False, worker=worker)
