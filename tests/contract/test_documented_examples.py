"""The documented curl examples (tests/contract/documented.py), replayed over real HTTP against the
live server with only the base URL, the token and the ``{{...}}`` placeholders replaced, and
their answers checked field by field, types included (tests/contract/shapes.py) and against the
seeded rows (tests/contract/scene.py). Each replay runs with http.client and again with the real
curl binary when it is installed.

What the answers must be was decided for issue 12: empty parameters mean "not given"; the empty
``X-Multiplai-Authorization;`` header counts as absent; unknown or malformed ids in filters
(``uuid1``, ``org-123``, ``user-123``) match nothing, never a 404/422; the workspace filter wins
over the organization."""
from __future__ import annotations

import uuid as uuid_lib

from tests.api.test_generate import PROMPT, VALID
from tests.contract import curl
from tests.contract.checks import assert_data_values, assert_meta, assert_rows, assert_seeded, assert_workflow_values
from tests.contract.documented import (
    COUNT_BY_ORGANIZATION_CURL,
    COUNT_CURL,
    GENERATE_CURL,
    LIST_CURL,
    RETRIEVE_CURL,
    with_form,
)
from tests.contract.shapes import INT, WORKFLOW, assert_execution, assert_shape


def _list_placeholders(scene) -> dict[str, str]:
    return {"workspace_uuid": scene.workspaces["main"]["uuid"], "workflow_uuid": scene.workflows["wf"]["uuid"]}


def test_the_replay_keeps_every_documented_byte(live_server):
    """The parser reads the documented commands as curl does; rendering changes only the base
    URL, the token and the placeholders."""
    rendered = curl.render(LIST_CURL, live_server.url, "T0KEN", {"workspace_uuid": "W", "workflow_uuid": "F"})
    request = curl.parse(rendered)
    assert request.method == "GET" and request.follow and not request.globbing
    assert request.url == (
        f"{live_server.url}/api/v1/workflow-executions?workspace_uuid=W&organization_multiplai_id=org-123"
        "&user_multiplai_id=user-123&workflow_uuid=F&workflow_uuids=uuid1&workflow_uuids=uuid2&search=&page="
        "&sort_by=&sort_direction=&date_from=2025-01-01&date_to=2025-01-31&with=&with_count=")
    assert request.headers == [("X-Multiplai-Authorization", ""), ("Authorization", "Bearer T0KEN")]
    generate = curl.parse(curl.render(GENERATE_CURL, live_server.url, "T0KEN"))
    assert generate.method == "POST" and generate.url == f"{live_server.url}/api/v1/workflows/generate"
    assert generate.form == [("workspace_uuid", ""), ("prompt", ""), ("stream", ""), ("auto_create", ""),
                             ("visibility", "")]
    filled = curl.parse(curl.render(with_form(GENERATE_CURL, prompt='say "hi"'), live_server.url, "T"))
    assert ("prompt", 'say "hi"') in filled.form


def test_list_as_documented_is_200_with_no_rows(scene, replayer, live_server):
    """Verbatim: nobody has multiplai_id ``user-123``, so nothing matches (uuid1/uuid2/org-123 match
    nothing either); every empty parameter takes its default."""
    reply = replayer(LIST_CURL, scene.token, _list_placeholders(scene))
    assert reply.status == 200, (reply.status, reply.body[:500])
    body = reply.json()
    assert_rows(body, scene, [])
    assert_meta(body, live_server.url, page=1, per_page=20, total=0)


def test_list_as_documented_with_user_123_returns_januarys_rows(scene_123, replayer, live_server):
    """The owner is ``user-123``: the seeded workflow's January 2025 executions of that user come
    back, created_at desc (the workspace filter wins over the unknown org-123; uuid1/uuid2 add
    nothing; no relations or counts: ``with=`` and ``with_count=`` are empty)."""
    scene = scene_123
    reply = replayer(LIST_CURL, scene.token, _list_placeholders(scene))
    assert reply.status == 200, (reply.status, reply.body[:500])
    body = reply.json()
    expected = scene.expect(workspaces={"main"}, workflows={"wf"}, user="owner", january=True)
    assert expected == ["last", "queued", "child", "parent", "review", "done"]  # the seed, for the reader
    assert_rows(body, scene, expected)
    assert_meta(body, live_server.url, page=1, per_page=20, total=len(expected))
    child = body["data"][expected.index("child")]
    assert child["parent_execution_uuid"] == scene.row("parent").uuid
    assert all(item["parent_execution_uuid"] is None for item in body["data"] if item is not child)


def test_retrieve_with_relations_as_documented(scene, replayer):
    """``with=workflow,workflowExecutionData``: the workflow with every documented field (and the
    two new counters, a partition of executions_count), the data rows with string ``data`` and
    integer millisecond ``execution_time``."""
    row = scene.row("child")
    reply = replayer(RETRIEVE_CURL, scene.token, {"uuid": row.uuid})
    assert reply.status == 200, (reply.status, reply.body[:500])
    body = reply.json()
    assert set(body) == {"data"}
    item = body["data"]
    assert_execution(item, "data", relations=("workflow", "workflow_execution_data"))
    assert_seeded(item, row, scene)
    assert item["parent_execution_uuid"] == scene.row("parent").uuid
    assert_workflow_values(item["workflow"], scene, "wf")
    assert_data_values(item["workflow_execution_data"], scene, row)


def test_count_as_documented(scene, replayer):
    """January 2025 in the workspace (all its workflows and users; deleted rows and rows of
    December 31 and February 1 left out); the empty filters count as not given."""
    reply = replayer(COUNT_CURL, scene.token, {"workspace_uuid": scene.workspaces["main"]["uuid"]})
    assert reply.status == 200, (reply.status, reply.body[:500])
    body = reply.json()
    assert set(body) == {"data"} and set(body["data"]) == {"count"}
    assert_shape(body["data"], {"count": INT}, "data")
    assert body["data"]["count"] == len(scene.expect(workspaces={"main"}, january=True)) == 9


def test_count_by_organization_as_documented(scene, replayer):
    reply = replayer(COUNT_BY_ORGANIZATION_CURL, scene.token, {"multiplai_id": "org-contract"})
    assert reply.status == 200, (reply.status, reply.body[:500])
    body = reply.json()
    assert_shape(body["data"], {"count": INT}, "data")
    assert body["data"]["count"] == len(scene.expect(workspaces={"main", "other"}, january=True)) == 10


def test_count_of_an_unknown_scope_is_zero(scene, replay):
    for command, placeholders in [
        (COUNT_CURL, {"workspace_uuid": str(uuid_lib.uuid4())}),  # a well-formed uuid nobody has
        (COUNT_CURL, {"workspace_uuid": "ws-123"}),  # malformed
        (COUNT_BY_ORGANIZATION_CURL, {"multiplai_id": "org-123"}),  # the documented placeholder id
    ]:
        reply = replay(command, scene.token, placeholders)
        assert reply.status == 200, (placeholders, reply.status, reply.body[:300])
        assert reply.json() == {"data": {"count": 0}}, placeholders


def _error_keys(value) -> set[str]:
    """Every key of an ``errors`` object, at any depth (flask-smorest nests them by location)."""
    if not isinstance(value, dict):
        return set()
    return set(value) | {k for v in value.values() for k in _error_keys(v)}


def test_generate_as_documented_is_422_naming_the_empty_fields(scene, replayer):
    reply = replayer(GENERATE_CURL, scene.token)
    assert reply.status == 422, (reply.status, reply.body[:500])
    body = reply.json()
    assert isinstance(body.get("message"), str) and body["message"]
    assert isinstance(body.get("errors"), dict), body
    assert {"workspace_uuid", "prompt"} <= _error_keys(body["errors"]), body["errors"]
    # the other empty fields (stream, auto_create, visibility) count as absent: no complaint about them
    assert not {"stream", "auto_create", "visibility"} & _error_keys(body["errors"]), body["errors"]


def test_generate_multipart_with_values_is_201_workflow(scene, replayer, fake_openai_app):
    """The documented form with workspace_uuid, a prompt and ``auto_create=true`` (stream and
    visibility still empty: absent), against the fake model the tests provide (the live server is
    the same app object, so fake_openai_app points it there too)."""
    fake_openai_app.reply_json(VALID)
    command = with_form(GENERATE_CURL, workspace_uuid=scene.workspaces["main"]["uuid"], prompt=PROMPT,
                        auto_create="true")
    reply = replayer(command, scene.token)
    assert reply.status == 201, (reply.status, reply.body[:500])
    body = reply.json()
    assert set(body) == {"data"}
    workflow = body["data"]
    assert_shape(workflow, WORKFLOW, "data")
    expected = {
        "user_id": scene.users["owner"]["id"], "workspace_id": scene.workspaces["main"]["id"], "template_id": None,
        "name": VALID["name"], "description": VALID["description"], "profile_photo_url": None,
        "profile_photo_config": None, "visibility": "workspace", "is_active": True, "is_owner": True,
        "is_favorite": False, "trigger_count": 0, "allow_account_usage": False, "last_used_at": None,
        "deleted_at": None, "executions_count": 0, "executions_in_progress_count": 0,
        "executions_for_review_count": 0, "executions_completed_count": 0, "executions_failed_count": 0,
        "executions_cancelled_count": 0,
    }
    actual = {key: workflow.get(key, "<missing>") for key in expected}
    assert actual == expected, {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    assert fake_openai_app.last.messages[-1] == {"role": "user", "content": PROMPT}
    assert not fake_openai_app.last.stream
