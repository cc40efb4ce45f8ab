"""Workflow graph validation (every rule names its culprit), the node-type catalog, secret
variables, and requests too malformed to reach a view."""
from __future__ import annotations

import json

import pytest

from athena.crypto import decrypt, is_encrypted
from athena.extensions import db
from athena.models import Workflow
from tests.api.helpers import assert_json_error
from tests.factories import headers_for, make_user, make_workflow, make_workspace

BASE = "/api/v1/workflows"


def _team():
    owner = make_user()
    return owner, make_workspace(owner, "Team")


def _graph(*extra_nodes, edges=()):
    return {"nodes": [{"id": "start", "type": "manual", "parameters": {}}, *extra_nodes], "edges": list(edges)}


# -- graph validation ---------------------------------------------------------------------------

GRAPH_ERRORS = [
    pytest.param(_graph({"id": "warp", "type": "teleport"}), "warp", id="unknown node type"),
    pytest.param(_graph({"type": "noop"}), "nodes[1]", id="missing node id"),
    pytest.param(_graph({"id": "twin", "type": "noop"}, {"id": "twin", "type": "noop"}), "twin",
                 id="duplicate node id"),
    pytest.param(_graph(edges=[{"id": "e_ghost", "source": "start", "target": "ghost"}]), "e_ghost",
                 id="edge to missing node"),
    pytest.param(_graph(edges=[{"id": "e_from", "source": "nowhere", "target": "start"}]), "e_from",
                 id="edge from missing node"),
    pytest.param(_graph({"id": "check", "type": "if", "parameters": {"condition": "{{ true }}"}},
                        {"id": "after", "type": "noop"},
                        edges=[{"id": "e_start", "source": "start", "target": "check"},
                               {"id": "e_maybe", "source": "check", "target": "after", "source_handle": "maybe"}]),
                 "e_maybe", id="missing source handle"),
    pytest.param(_graph({"id": "loop_a", "type": "noop"}, {"id": "loop_b", "type": "noop"},
                        edges=[{"id": "e1", "source": "start", "target": "loop_a"},
                               {"id": "e2", "source": "loop_a", "target": "loop_b"},
                               {"id": "e3", "source": "loop_b", "target": "loop_a"}]),
                 "loop_a", id="cycle"),
    pytest.param(_graph({"id": "cond", "type": "if", "parameters": {}}), "cond", id="if without condition"),
    pytest.param(_graph({"id": "assign", "type": "set", "parameters": {"fields": ["a", "b"]}}), "assign",
                 id="set fields not a dict"),
    pytest.param(_graph({"id": "params", "type": "noop", "parameters": "nope"}), "params",
                 id="parameters not an object"),
    pytest.param({"nodes": ["just a string"], "edges": []}, "nodes[0]", id="node not an object"),
    pytest.param(_graph(edges=["e"]), "edges[0]", id="edge not an object"),
]


@pytest.mark.parametrize("graph, names", GRAPH_ERRORS)
def test_graph_validation_names_the_culprit(client, graph, names):
    owner, workspace = _team()
    headers = headers_for(owner)
    created = client.post(BASE, json={"workspace_uuid": workspace.uuid, "name": "bad", **graph}, headers=headers)
    body = assert_json_error(created, 422)
    assert names in body["message"], body
    assert body["errors"]
    assert db.session.execute(db.select(db.func.count()).select_from(Workflow)).scalar_one() == 0

    workflow = make_workflow(workspace, owner, name="good")
    before = (list(workflow.nodes), list(workflow.edges))
    updated = client.put(f"{BASE}/{workflow.uuid}", json=graph, headers=headers)
    assert names in assert_json_error(updated, 422)["message"]
    db.session.expire_all()
    row = db.session.get(Workflow, workflow.id)
    assert (row.nodes, row.edges) == before


def test_graph_cycle_message_lists_the_loop(client):
    owner, workspace = _team()
    graph = GRAPH_ERRORS[6].values[0]
    body = assert_json_error(client.post(BASE, json={"workspace_uuid": workspace.uuid, "name": "c", **graph},
                                         headers=headers_for(owner)), 422)
    assert "cycle" in body["message"] and "loop_b" in body["message"]


def test_updating_nodes_alone_is_checked_against_the_stored_edges(client):
    owner, workspace = _team()
    workflow = make_workflow(workspace, owner)  # start -> n1 via edge e1
    response = client.put(f"{BASE}/{workflow.uuid}", json={"nodes": [{"id": "start", "type": "manual"}]},
                          headers=headers_for(owner))
    assert "e1" in assert_json_error(response, 422)["message"]


def test_node_limit(client, app):
    owner, workspace = _team()
    limit = app.config["MAX_NODES_PER_WORKFLOW"]
    nodes = [{"id": "start", "type": "manual"}] + [{"id": f"n{i}", "type": "noop"} for i in range(limit)]
    response = client.post(BASE, json={"workspace_uuid": workspace.uuid, "name": "big", "nodes": nodes},
                           headers=headers_for(owner))
    assert str(limit) in assert_json_error(response, 422)["message"]


def test_node_types_catalog(client):
    response = client.get("/api/v1/node-types", headers=headers_for(make_user()))
    assert response.status_code == 200
    types = {t["type"]: t for t in response.json["data"]}
    assert {"manual", "webhook", "set", "if", "noop", "stop_and_error"} <= set(types)
    for item in types.values():
        assert set(item) >= {"type", "description", "is_trigger", "handles", "parameters"}
        assert isinstance(item["parameters"], dict) and item["handles"]
    assert types["if"]["handles"] == ["true", "false"]
    assert types["manual"]["is_trigger"] is True and types["set"]["is_trigger"] is False
    assert "condition" in json.dumps(types["if"]["parameters"])
    assert "fields" in json.dumps(types["set"]["parameters"])


# -- variables ----------------------------------------------------------------------------------

def test_secret_variables_are_masked_and_kept(client):
    owner, workspace = _team()
    headers = headers_for(owner)
    variables = {"api_key": {"secret": True, "value": "sk-live-123"}, "base": "https://api.example.com"}
    created = client.post(BASE, json={"workspace_uuid": workspace.uuid, "name": "v", "variables": variables},
                          headers=headers)
    assert created.status_code == 201, created.json
    shown = created.json["data"]["variables"]
    assert shown == {"api_key": {"secret": True, "value": "********"}, "base": "https://api.example.com"}
    uuid = created.json["data"]["uuid"]
    for response in (created, client.get(f"{BASE}/{uuid}", headers=headers), client.get(BASE, headers=headers)):
        assert "sk-live-123" not in response.get_data(as_text=True)

    def stored() -> dict:
        db.session.expire_all()
        return db.session.execute(db.select(Workflow.variables).where(Workflow.uuid == uuid)).scalar_one()

    def clear(variables: dict) -> dict:  # secrets are encrypted at rest; decrypt to compare
        return {k: {"secret": True, "value": decrypt(v["value"])} if isinstance(v, dict) else v
                for k, v in variables.items()}

    assert is_encrypted(stored()["api_key"]["value"]) and "sk-live-123" not in str(stored())
    assert clear(stored())["api_key"] == {"secret": True, "value": "sk-live-123"}
    # the editor sends back what it was shown, plus a change elsewhere: the secret survives
    echoed = client.put(f"{BASE}/{uuid}", json={"variables": {**shown, "base": "https://eu.example.com"}},
                        headers=headers)
    assert echoed.status_code == 200
    assert echoed.json["data"]["variables"]["api_key"]["value"] == "********"
    assert clear(stored()) == {"api_key": {"secret": True, "value": "sk-live-123"}, "base": "https://eu.example.com"}
    # a new value replaces it
    client.put(f"{BASE}/{uuid}", json={"variables": {"api_key": {"secret": True, "value": "sk-new"}}},
               headers=headers)
    assert clear(stored()) == {"api_key": {"secret": True, "value": "sk-new"}}
    # a mask for a secret that never existed is refused, not stored
    bad = client.put(f"{BASE}/{uuid}", json={"variables": {"other": {"secret": True, "value": "********"}}},
                     headers=headers)
    assert bad.status_code == 422 and "variables.other" in bad.json["errors"]


# -- malformed requests -------------------------------------------------------------------------

def test_malformed_requests_get_json_errors(client, app):
    owner, workspace = _team()
    headers = headers_for(owner)
    workflow = make_workflow(workspace, owner)
    create = {"workspace_uuid": workspace.uuid, "name": "x"}

    def post_raw(text: str | bytes):
        return client.post(BASE, data=text, content_type="application/json", headers=headers)

    # not JSON, or JSON the database could not store: NaN, overflowing numbers, absurd nesting
    for text in ("{not json", '{"name": NaN}', '{"name": 1e999}', '{"name": ' + "9" * 5000 + "}", "[" * 100_000):
        assert_json_error(post_raw(text), 400)
    assert_json_error(client.post(BASE, json=[1, 2], headers=headers), 422)
    # NUL can't be stored by PostgreSQL: refused wherever it hides
    assert_json_error(client.post(BASE, json={**create, "name": "nul\x00"}, headers=headers), 422)
    assert_json_error(client.post(BASE, json={**create, "variables": {"k\x00": 1}}, headers=headers), 422)
    assert_json_error(client.get(f"{BASE}?search=a%00b", headers=headers), 422)
    assert_json_error(client.get(f"{BASE}/{workflow.uuid}%00", headers=headers), 422)
    deep: list = []
    for _ in range(200):
        deep = [deep]
    assert_json_error(client.post(BASE, json={**create, "variables": {"v": deep}}, headers=headers), 422)
    assert client.post(BASE, json={**create, "variables": {"v": [[[[{"a": [1]}]]]]}}, headers=headers).status_code \
        == 201  # ordinary nesting is fine

    too_big = b"{" + b" " * app.config["MAX_CONTENT_LENGTH"] + b"}"
    assert_json_error(post_raw(too_big), 413)
    for response in (client.get("/api/v1/no-such-thing", headers=headers), client.get("/nowhere")):
        assert_json_error(response, 404)
    assert_json_error(client.patch(BASE, json={}, headers=headers), 405)
    assert_json_error(client.post(f"{BASE}/{workflow.uuid}", json={}, headers=headers), 405)
    assert db.session.execute(db.select(db.func.count()).select_from(Workflow)).scalar_one() == 2
