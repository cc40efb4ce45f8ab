"""The documented list, retrieve and count requests with their parameters empty one by one, all
empty, or all set (derived from the documented strings by tests/contract/documented.py, every
other byte kept), replayed over real HTTP against the live server; and the retrieve example on
an execution the engine itself wrote (inline webhook run), for the documented types of
``workflow_execution_data``."""
from __future__ import annotations

import json

import pytest
import requests

from tests.contract.checks import assert_meta, assert_rows, assert_seeded
from tests.contract.documented import COUNT_CURL, LIST_CURL, RETRIEVE_CURL, query_of, set_params, with_query
from tests.contract.shapes import assert_execution
from tests.executions.test_webhook import webhook_graph
from tests.factories import make_workflow

# Every query parameter of the list (the documented ones, and status/mode/per_page/workflow_uuids[]
# the overview names), each sent empty next to a workspace filter.
EMPTY_ONE_BY_ONE = ["organization_multiplai_id", "user_multiplai_id", "workflow_uuid", "workflow_uuids",
                    "workflow_uuids[]", "search", "page", "per_page", "sort_by", "sort_direction", "date_from",
                    "date_to", "status", "mode", "with", "with_count"]


def _main(scene) -> dict[str, str]:
    return {"workspace_uuid": scene.workspaces["main"]["uuid"], "workflow_uuid": scene.workflows["wf"]["uuid"]}


def _ok(reply) -> dict:
    assert reply.status == 200, (reply.status, reply.body[:500])
    return reply.json()


@pytest.mark.parametrize("name", EMPTY_ONE_BY_ONE)
def test_each_empty_list_parameter_means_not_given(scene, replay, live_server, name):
    body = _ok(replay(with_query(LIST_CURL, f"workspace_uuid={{{{workspace_uuid}}}}&{name}="), scene.token,
                      _main(scene)))
    expected = scene.expect(workspaces={"main"})  # every live row of the workspace, created_at desc
    assert len(expected) == 11
    assert_rows(body, scene, expected)
    assert_meta(body, live_server.url, page=1, per_page=20, total=len(expected))


def test_an_empty_workspace_uuid_means_not_given(scene, replay):
    body = _ok(replay(with_query(LIST_CURL, "workspace_uuid=&workflow_uuid={{workflow_uuid}}"), scene.token,
                      _main(scene)))
    assert_rows(body, scene, scene.expect(workflows={"wf"}))


def test_every_list_parameter_empty_at_once(scene, replay, live_server):
    empties = "&".join(f"{name}=" for name in EMPTY_ONE_BY_ONE)
    body = _ok(replay(with_query(LIST_CURL, f"workspace_uuid={{{{workspace_uuid}}}}&{empties}"), scene.token,
                      _main(scene)))
    expected = scene.expect(workspaces={"main"})
    assert_rows(body, scene, expected)
    assert_meta(body, live_server.url, page=1, per_page=20, total=len(expected))


def test_every_documented_list_parameter_set(scene_123, replay, live_server):
    """The documented request with every parameter given a value: the real organization, the
    second workflow in ``workflow_uuids`` (next to the unknown ``uuid2``), a search, page 2 of 2
    per page ascending, both relations and both counts."""
    scene = scene_123
    command = set_params(
        LIST_CURL, organization_multiplai_id="org-contract", workflow_uuids=scene.workflows["wf2"]["uuid"],
        search="ACME", page="2", sort_by="created_at", sort_direction="asc",
        with_="workflow,workflowExecutionData", with_count="workflowApprovals,pendingWorkflowApprovals")
    command = with_query(command, query_of(command) + "&per_page=2")
    body = _ok(replay(command, scene.token, _main(scene)))
    everything = scene.expect(workspaces={"main"}, workflows={"wf", "wf2"}, user="owner", january=True,
                              search="ACME", ascending=True)
    assert everything == ["done", "review", "parent", "child", "sibling", "last"]  # the seed, for the reader
    assert_rows(body, scene, everything[2:4], relations=("workflow", "workflow_execution_data"), counts=True)
    assert_meta(body, live_server.url, page=2, per_page=2, total=len(everything))


def test_status_and_with_count_select_the_approvals(scene, replay):
    command = with_query(LIST_CURL, "workspace_uuid={{workspace_uuid}}&status=paused"
                                    "&with_count=workflowApprovals,pendingWorkflowApprovals")
    body = _ok(replay(command, scene.token, _main(scene)))
    assert_rows(body, scene, ["review"], counts=True)
    assert (body["data"][0]["workflow_approvals_count"], body["data"][0]["pending_workflow_approvals_count"]) == (3, 2)


@pytest.mark.parametrize("query, expected", [
    # workflow filters select executions of any of the workflows; unknown ones add nothing
    ("workspace_uuid={{workspace_uuid}}&workflow_uuid={{workflow_uuid}}&workflow_uuids={{wf2}}&workflow_uuids=uuid2",
     {"workspaces": {"main"}, "workflows": {"wf", "wf2"}}),
    ("workflow_uuids=uuid1&workflow_uuids=uuid2", None),
    # the workspace filter wins over the organization (not a union with it)
    ("workspace_uuid={{other}}&organization_multiplai_id=org-contract", {"workspaces": {"other"}}),
    ("organization_multiplai_id=org-contract", {"workspaces": {"main", "other"}}),
    ("organization_multiplai_id=org-123", None),
    ("workspace_uuid={{workspace_uuid}}&user_multiplai_id=user-bob", {"workspaces": {"main"}, "user": "bob"}),
    ("workspace_uuid={{workspace_uuid}}&user_multiplai_id=user-123", None),
], ids=["workflows-union", "unknown-workflows", "workspace-wins", "organization", "unknown-organization",
        "user", "unknown-user"])
def test_filters_match_what_they_name_and_unknown_ids_nothing(scene, replay, query, expected):
    placeholders = {**_main(scene), "wf2": scene.workflows["wf2"]["uuid"], "other": scene.workspaces["other"]["uuid"]}
    body = _ok(replay(with_query(LIST_CURL, query), scene.token, placeholders))
    assert_rows(body, scene, scene.expect(**expected) if expected else [])


@pytest.mark.parametrize("query, relations, counts", [
    ("with=", (), False),
    ("with=&with_count=", (), False),
    ("with=workflow", ("workflow",), False),
    ("with=workflowExecutionData&with_count=workflowApprovals,pendingWorkflowApprovals",
     ("workflow_execution_data",), True),
], ids=["with-empty", "with-and-with_count-empty", "with-workflow", "with-data-and-counts"])
def test_retrieve_relations_only_when_asked(scene, replay, query, relations, counts):
    row = scene.row("review")
    reply = replay(with_query(RETRIEVE_CURL, query), scene.token, {"uuid": row.uuid})
    item = _ok(reply)["data"]
    assert_execution(item, "data", relations=relations, counts=counts)
    assert_seeded(item, row, scene)
    if counts:
        assert (item["workflow_approvals_count"], item["pending_workflow_approvals_count"]) == (3, 2)


@pytest.mark.parametrize("filters, expected", [
    ("status=paused", ["review"]),
    ("status=completed", ["done", "sibling", "last"]),
    ("requires_human_review=true", ["review"]),
    ("has_command_room_task=true", ["child"]),
    ("status=&requires_human_review=false&has_command_room_task=", None),
])
def test_count_filters(scene, replay, filters, expected):
    command = with_query(COUNT_CURL, "workspace_uuid={{workspace_uuid}}&start_date=2025-01-01"
                                     f"&end_date=2025-01-31&{filters}")
    body = _ok(replay(command, scene.token, _main(scene)))
    if expected is None:  # everything in January but the one needing review
        expected = [k for k in scene.expect(workspaces={"main"}, january=True) if k != "review"]
    assert body == {"data": {"count": len(expected)}}


def test_the_documented_headers_without_the_bearer_are_401(scene, replay):
    """The empty X-Multiplai-Authorization header alone authenticates nobody."""
    command = LIST_CURL.replace(" \\\n--header 'Authorization: Bearer <token>'", "")
    assert "Authorization: Bearer" not in command
    reply = replay(command, "unused", _main(scene))
    assert reply.status == 401, (reply.status, reply.body[:300])
    assert isinstance(reply.json().get("message"), str)


def test_retrieve_an_execution_the_engine_wrote(scene, replay, live_server):
    """An inline webhook run (the real engine, in the API process) writes the data row; the
    documented retrieve shows it with the documented types: ``data`` a JSON string of the graph,
    ``execution_time`` an int (ms), ``workflow_execution_data_id`` the row's id."""
    from athena.extensions import db
    from athena.models import User, Workspace

    nodes, edges = webhook_graph()
    owner = db.session.get(User, scene.users["owner"]["id"])
    workflow = make_workflow(db.session.get(Workspace, scene.workspaces["main"]["id"]), owner, nodes=nodes,
                             edges=edges)
    workflow_uuid = workflow.uuid
    db.session.close()
    run = requests.post(f"{live_server.url}/api/v1/workflows/{workflow_uuid}/webhook?wait=true",
                        json={"email": "c@example.com"}, headers={"Authorization": f"Bearer {scene.token}"},
                        timeout=60)
    assert run.status_code == 200, run.text[:500]
    uuid = run.json()["data"]["uuid"]
    item = _ok(replay(RETRIEVE_CURL, scene.token, {"uuid": uuid}))["data"]
    assert_execution(item, "data", relations=("workflow", "workflow_execution_data"))
    assert item["status"] == "completed" and item["workflow_uuid"] == workflow_uuid
    [data] = item["workflow_execution_data"]
    assert [entry["status"] for entry in data["workflow_data"]] == ["success", "success"]
    assert type(data["metadata"]["execution_time"]) is int and data["metadata"]["execution_time"] >= 0
    assert type(data["metadata"]["workflow_execution_data_id"]) is int
    graph = json.loads(data["data"])
    assert [n["id"] for n in graph["nodes"]] == ["hook", "echo"] and len(graph["edges"]) == 1
