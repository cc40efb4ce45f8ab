"""Workflows (API Reference -> Workflow): CRUD, favorites, list filters, counters, access rules.
Graph validation, node types, variables and malformed requests: test_workflow_graph.py."""
from __future__ import annotations

import uuid as uuid_lib
from datetime import timedelta

import pytest

from athena.extensions import db
from athena.models import Workflow, WorkflowExecution, WorkflowFavorite
from athena.services.secrets import decrypt_secret
from athena.timeutil import utcnow
from tests.api.helpers import TIMESTAMP, assert_json_error, count_statements, revoked_headers
from tests.factories import headers_for, linear_graph, make_user, make_workflow, make_workspace

BASE = "/api/v1/workflows"
# The documented Workflow resource (reference: athena-generate-workflow.txt) plus the graph.
DOCUMENTED_FIELDS = {
    "id", "uuid", "user_id", "workspace_id", "template_id", "name", "description", "profile_photo_url",
    "profile_photo_config", "visibility", "is_active", "is_owner", "is_favorite", "trigger_count",
    "allow_cloning", "allow_account_usage", "last_used_at", "created_at", "updated_at", "deleted_at",
    "executions_count", "executions_in_progress_count", "executions_for_review_count",
    "executions_completed_count",
}
# Athena adds the two buckets that make the counters a partition (executions_count = their sum).
FIELDS = DOCUMENTED_FIELDS | {"nodes", "edges", "variables", "has_webhook_secret", "executions_failed_count",
                              "executions_cancelled_count"}
BUCKETS = ("executions_in_progress_count", "executions_for_review_count", "executions_completed_count",
           "executions_failed_count", "executions_cancelled_count")
COUNTERS = ("executions_count", *BUCKETS)


def _team():
    owner, editor, viewer, outsider = make_user(), make_user(), make_user(), make_user()
    workspace = make_workspace(owner, "Team", members={editor: "editor", viewer: "viewer"})
    return owner, editor, viewer, outsider, workspace


def _assert_shape(data: dict) -> None:
    assert set(data) == FIELDS
    for key in ("created_at", "updated_at"):
        assert TIMESTAMP.match(data[key]), (key, data[key])
    for key in ("last_used_at", "deleted_at"):
        assert data[key] is None or TIMESTAMP.match(data[key]), (key, data[key])


# -- create / retrieve --------------------------------------------------------------------------

def test_create_returns_the_documented_resource(client):
    owner, *_, workspace = _team()
    nodes, edges = linear_graph(3)
    body = {"workspace_uuid": workspace.uuid, "name": "Onboarding", "description": "New customers",
            "visibility": "private", "nodes": nodes, "edges": edges, "variables": {"region": "eu"}}
    response = client.post(BASE, json=body, headers=headers_for(owner))
    assert response.status_code == 201, response.json
    data = response.json["data"]
    _assert_shape(data)
    assert (data["name"], data["description"], data["visibility"]) == ("Onboarding", "New customers", "private")
    assert (data["user_id"], data["workspace_id"]) == (owner.id, workspace.id)
    assert data["is_owner"] is True and data["is_favorite"] is False and data["is_active"] is True
    assert [data[c] for c in COUNTERS] == [0] * len(COUNTERS)
    assert [n["id"] for n in data["nodes"]] == ["start", "n1", "n2"]
    assert data["edges"] == edges and data["variables"] == {"region": "eu"}
    assert data["has_webhook_secret"] is False and data["deleted_at"] is None
    row = db.session.execute(db.select(Workflow).where(Workflow.uuid == data["uuid"])).scalar_one()
    assert row.name == "Onboarding" and row.user_id == owner.id

    fetched = client.get(f"{BASE}/{data['uuid']}", headers=headers_for(owner))
    assert fetched.status_code == 200
    assert fetched.json["data"] == data


def test_create_minimal_and_defaults(client):
    owner, *_, workspace = _team()
    response = client.post(BASE, json={"workspace_uuid": workspace.uuid, "name": "Empty"}, headers=headers_for(owner))
    assert response.status_code == 201, response.json
    data = response.json["data"]
    assert (data["nodes"], data["edges"], data["variables"], data["visibility"]) == ([], [], {}, "workspace")


@pytest.mark.parametrize("body, field", [
    ({"name": "x"}, "workspace_uuid"),
    ({"workspace_uuid": "WS"}, "name"),
    ({"workspace_uuid": "WS", "name": ""}, "name"),
    ({"workspace_uuid": "WS", "name": "x", "visibility": "everyone"}, "visibility"),
    ({"workspace_uuid": "WS", "name": "x", "nodes": {"id": "a"}}, "nodes"),
    ({"workspace_uuid": "WS", "name": "x", "variables": ["a"]}, "variables"),
    ({"workspace_uuid": "WS", "name": "x", "is_active": "maybe"}, "is_active"),
    ({"workspace_uuid": "WS", "name": "x", "user_id": 1}, "user_id"),  # no mass assignment
    ({"workspace_uuid": "WS", "name": "x", "webhook_secret": "short"}, "webhook_secret"),
])
def test_create_validates_fields(client, body, field):
    owner, *_, workspace = _team()
    body = {k: (workspace.uuid if v == "WS" else v) for k, v in body.items()}
    response = client.post(BASE, json=body, headers=headers_for(owner))
    assert field in assert_json_error(response, 422)["errors"]
    assert db.session.execute(db.select(db.func.count()).select_from(Workflow)).scalar_one() == 0


def test_create_in_someone_elses_workspace(client):
    owner, _, viewer, outsider, workspace = _team()
    body = {"workspace_uuid": workspace.uuid, "name": "Sneaky"}
    assert_json_error(client.post(BASE, json=body, headers=headers_for(viewer)), 403)
    assert_json_error(client.post(BASE, json=body, headers=headers_for(outsider)), 404)
    assert_json_error(client.post(BASE, json={**body, "workspace_uuid": str(uuid_lib.uuid4())},
                                  headers=headers_for(owner)), 404)
    assert db.session.execute(db.select(db.func.count()).select_from(Workflow)).scalar_one() == 0


def test_is_owner_and_visibility_are_relative_to_the_caller(client):
    owner, editor, viewer, outsider, workspace = _team()
    shared = make_workflow(workspace, owner, name="Shared")
    private = make_workflow(workspace, owner, name="Mine only", visibility="private")
    assert client.get(f"{BASE}/{shared.uuid}", headers=headers_for(owner)).json["data"]["is_owner"] is True
    as_editor = client.get(f"{BASE}/{shared.uuid}", headers=headers_for(editor))
    assert as_editor.status_code == 200 and as_editor.json["data"]["is_owner"] is False
    assert client.get(f"{BASE}/{private.uuid}", headers=headers_for(owner)).status_code == 200
    assert_json_error(client.get(f"{BASE}/{private.uuid}", headers=headers_for(viewer)), 404)
    assert [w["name"] for w in client.get(BASE, headers=headers_for(viewer)).json["data"]] == ["Shared"]
    assert_json_error(client.get(f"{BASE}/{shared.uuid}", headers=headers_for(outsider)), 404)


# -- update / delete ----------------------------------------------------------------------------

def test_update(client):
    owner, editor, *_, workspace = _team()
    workflow = make_workflow(workspace, owner, name="Before")
    nodes, edges = linear_graph(4)
    response = client.put(f"{BASE}/{workflow.uuid}", headers=headers_for(editor), json={
        "name": "After", "description": None, "is_active": False, "visibility": "public",
        "nodes": nodes, "edges": edges, "webhook_secret": "s" * 20,
    })
    assert response.status_code == 200, response.json
    data = response.json["data"]
    _assert_shape(data)
    assert (data["name"], data["description"], data["is_active"], data["visibility"]) == ("After", None, False,
                                                                                         "public")
    assert len(data["nodes"]) == 4 and data["has_webhook_secret"] is True and data["is_owner"] is False
    assert "s" * 20 not in response.get_data(as_text=True)
    db.session.expire_all()
    row = db.session.get(Workflow, workflow.id)
    assert (row.name, row.is_active, row.user_id) == ("After", False, owner.id)
    assert decrypt_secret(row.webhook_secret) == "s" * 20

    # an empty body changes nothing
    same = client.put(f"{BASE}/{workflow.uuid}", json={}, headers=headers_for(owner))
    assert same.status_code == 200 and same.json["data"]["name"] == "After"
    assert "name" in assert_json_error(
        client.put(f"{BASE}/{workflow.uuid}", json={"name": None}, headers=headers_for(owner)), 422)["errors"]


def test_soft_delete_keeps_the_row(client):
    owner, editor, *_, workspace = _team()
    workflow = make_workflow(workspace, owner)
    response = client.delete(f"{BASE}/{workflow.uuid}", headers=headers_for(editor))
    assert response.status_code == 204 and response.get_data() == b""
    db.session.expire_all()
    row = db.session.get(Workflow, workflow.id)
    assert row is not None and row.deleted_at is not None
    headers = headers_for(owner)
    assert_json_error(client.get(f"{BASE}/{workflow.uuid}", headers=headers), 404)
    assert_json_error(client.put(f"{BASE}/{workflow.uuid}", json={"name": "x"}, headers=headers), 404)
    assert_json_error(client.delete(f"{BASE}/{workflow.uuid}", headers=headers), 404)
    assert_json_error(client.post(f"{BASE}/{workflow.uuid}/favorite", headers=headers), 404)
    assert client.get(BASE, headers=headers).json["data"] == []


def test_viewer_cannot_write(client):
    owner, _, viewer, _, workspace = _team()
    workflow = make_workflow(workspace, owner, name="Keep")
    headers = headers_for(viewer)
    assert_json_error(client.post(BASE, json={"workspace_uuid": workspace.uuid, "name": "x"}, headers=headers), 403)
    assert_json_error(client.put(f"{BASE}/{workflow.uuid}", json={"name": "x"}, headers=headers), 403)
    assert_json_error(client.delete(f"{BASE}/{workflow.uuid}", headers=headers), 403)
    db.session.expire_all()
    row = db.session.get(Workflow, workflow.id)
    assert (row.name, row.deleted_at) == ("Keep", None)
    assert db.session.execute(db.select(db.func.count()).select_from(Workflow)).scalar_one() == 1


def test_other_workspaces_are_404(client):
    owner, *_, outsider, workspace = _team()
    workflow = make_workflow(workspace, owner, name="Theirs")
    make_workspace(outsider)
    headers = headers_for(outsider)
    url = f"{BASE}/{workflow.uuid}"
    for method, path, body in [("get", url, None), ("put", url, {"name": "pwned"}), ("delete", url, None),
                               ("post", f"{url}/favorite", None), ("delete", f"{url}/favorite", None)]:
        assert_json_error(getattr(client, method)(path, json=body, headers=headers), 404)
    assert_json_error(client.get(f"{BASE}?workspace_uuid={workspace.uuid}", headers=headers), 404)
    assert client.get(BASE, headers=headers).json["data"] == []
    db.session.expire_all()
    assert db.session.get(Workflow, workflow.id).name == "Theirs"
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowFavorite)).scalar_one() == 0


# -- favorites ----------------------------------------------------------------------------------

def test_favorite_is_per_caller(client):
    owner, _, viewer, _, workspace = _team()
    workflow = make_workflow(workspace, owner)
    url = f"{BASE}/{workflow.uuid}/favorite"
    viewer_h, owner_h = headers_for(viewer), headers_for(owner)
    marked = client.post(url, headers=viewer_h)  # personal: readers may favorite too
    assert marked.status_code == 200 and marked.json["data"]["is_favorite"] is True
    _assert_shape(marked.json["data"])
    assert client.post(url, headers=viewer_h).json["data"]["is_favorite"] is True  # idempotent
    assert client.get(f"{BASE}/{workflow.uuid}", headers=viewer_h).json["data"]["is_favorite"] is True
    assert client.get(f"{BASE}/{workflow.uuid}", headers=owner_h).json["data"]["is_favorite"] is False
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowFavorite)).scalar_one() == 1
    unmarked = client.delete(url, headers=viewer_h)
    assert unmarked.status_code == 200 and unmarked.json["data"]["is_favorite"] is False
    assert client.delete(url, headers=viewer_h).json["data"]["is_favorite"] is False
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowFavorite)).scalar_one() == 0


# -- list, filters, counters --------------------------------------------------------------------

def test_list_pagination(client):
    owner, *_, workspace = _team()
    for i in range(5):
        make_workflow(workspace, owner, name=f"wf{i}")
    headers = headers_for(owner)
    page = client.get(f"{BASE}?per_page=2&page=2&sort_by=name&sort_direction=asc", headers=headers)
    assert page.status_code == 200
    assert [w["name"] for w in page.json["data"]] == ["wf2", "wf3"]
    assert page.json["meta"] == {"current_page": 2, "from": 3, "last_page": 3, "per_page": 2, "to": 4,
                                 "total": 5, "path": "http://localhost/api/v1/workflows"}
    links = page.json["links"]
    assert "page=1" in links["first"] and "page=3" in links["last"]
    assert "page=1" in links["prev"] and "page=3" in links["next"]
    assert "sort_by=name" in links["next"]  # filters survive in the links
    for item in page.json["data"]:
        _assert_shape(item)
    assert "per_page" in assert_json_error(client.get(f"{BASE}?per_page=101", headers=headers), 422)["errors"]
    assert "sort_by" in assert_json_error(client.get(f"{BASE}?sort_by=password", headers=headers), 422)["errors"]
    assert "sort_direction" in assert_json_error(client.get(f"{BASE}?sort_direction=up", headers=headers),
                                                 422)["errors"]
    assert_json_error(client.get(f"{BASE}?workspace_uuid={uuid_lib.uuid4()}", headers=headers), 404)


def test_list_filters_and_sorting(client):
    owner = make_user()
    ws1, ws2 = make_workspace(owner, "One"), make_workspace(owner, "Two")
    now = utcnow()
    alpha = make_workflow(ws1, owner, name="alpha", description="sends invoices", last_used_at=now)
    beta = make_workflow(ws1, owner, name="beta", visibility="private", is_active=False,
                         last_used_at=now - timedelta(days=1))
    gamma = make_workflow(ws2, owner, name="gamma 100%", visibility="public")
    delta = make_workflow(ws2, owner, name="delta 1000")
    make_workflow(ws2, owner, name="deleted", deleted_at=now)
    headers = headers_for(owner)
    client.post(f"{BASE}/{beta.uuid}/favorite", headers=headers)
    client.post(f"{BASE}/{gamma.uuid}/favorite", headers=headers)

    def names(query: str) -> list[str]:
        response = client.get(f"{BASE}?sort_by=name&sort_direction=asc&{query}", headers=headers)
        assert response.status_code == 200, response.json
        return [w["name"] for w in response.json["data"]]

    assert names("") == ["alpha", "beta", "delta 1000", "gamma 100%"]
    assert names(f"workspace_uuid={ws1.uuid}") == ["alpha", "beta"]
    assert names("search=INVOICE") == ["alpha"]  # description, case-insensitive
    assert names("search=100%25") == ["gamma 100%"]  # % is literal
    assert names("visibility=private") == ["beta"]
    assert names("visibility=public") == ["gamma 100%"]
    assert names("is_active=false") == ["beta"]
    assert names("is_active=true") == ["alpha", "delta 1000", "gamma 100%"]
    assert names("is_favorite=true") == ["beta", "gamma 100%"]
    assert names("is_favorite=false") == ["alpha", "delta 1000"]
    assert names(f"is_favorite=true&workspace_uuid={ws2.uuid}") == ["gamma 100%"]
    assert [w["is_favorite"] for w in client.get(f"{BASE}?sort_by=name&sort_direction=asc",
                                                 headers=headers).json["data"]] == [False, True, False, True]

    def order(query: str) -> list[str]:
        return [w["name"] for w in client.get(f"{BASE}?{query}", headers=headers).json["data"]]

    assert order("sort_by=name&sort_direction=desc") == ["gamma 100%", "delta 1000", "beta", "alpha"]
    # default: newest first
    assert order("") == [w.name for w in sorted([alpha, beta, gamma, delta], key=lambda w: (w.created_at, w.id),
                                                 reverse=True)]
    # never-used workflows come last in both directions, on every database
    assert order("sort_by=last_used_at&sort_direction=desc")[:2] == ["alpha", "beta"]
    assert order("sort_by=last_used_at&sort_direction=asc")[:2] == ["beta", "alpha"]


def _execution(workflow, status: str, **kw) -> WorkflowExecution:
    row = WorkflowExecution(workflow_id=workflow.id, workspace_id=workflow.workspace_id, status=status,
                            is_finished=status in ("completed", "failed", "cancelled"), **kw)
    db.session.add(row)
    return row


def test_execution_counters_partition_every_status(client):
    """Each of the seven statuses counts in exactly one bucket, and the buckets add up to
    executions_count: in progress = pending, running, waiting; for review = paused (awaiting a
    human); completed; failed; cancelled."""
    owner, *_, workspace = _team()
    busy = make_workflow(workspace, owner, name="busy")
    make_workflow(workspace, owner, name="idle")
    seeded = {"pending": 1, "running": 2, "waiting": 3, "paused": 4, "completed": 5, "failed": 6, "cancelled": 7}
    for status, times in seeded.items():
        for _ in range(times):
            _execution(busy, status)
        _execution(busy, status, deleted_at=utcnow())  # deleted executions don't count
    db.session.commit()
    listed = {w["name"]: w for w in client.get(BASE, headers=headers_for(owner)).json["data"]}
    assert listed["idle"] == {**listed["idle"], **dict.fromkeys(COUNTERS, 0)}
    busy_data = listed["busy"]
    assert {key: busy_data[key] for key in COUNTERS} == {
        "executions_count": 28,
        "executions_in_progress_count": 1 + 2 + 3,
        "executions_for_review_count": 4,
        "executions_completed_count": 5,
        "executions_failed_count": 6,
        "executions_cancelled_count": 7,
    }
    assert sum(busy_data[key] for key in BUCKETS) == busy_data["executions_count"]
    assert client.get(f"{BASE}/{busy.uuid}", headers=headers_for(owner)).json["data"] == busy_data


def test_list_has_no_n_plus_one(client):
    owner, editor, *_, workspace = _team()
    headers = headers_for(editor)

    def add(count: int) -> None:
        for i in range(count):  # every workflow has an execution and is a favorite of the caller
            workflow = make_workflow(workspace, owner)
            _execution(workflow, ("running", "completed", "paused")[i % 3])
            db.session.add(WorkflowFavorite(workflow_id=workflow.id, user_id=editor.id, created_at=utcnow()))
        db.session.commit()

    add(3)
    with count_statements() as few:
        response = client.get(f"{BASE}?per_page=100", headers=headers)
    assert len(response.json["data"]) == 3
    add(27)
    with count_statements() as many:
        response = client.get(f"{BASE}?per_page=100", headers=headers)
    data = response.json["data"]
    assert len(data) == 30
    assert all(set(w) == FIELDS and w["is_favorite"] and w["executions_count"] == 1 for w in data)
    assert len(many) == len(few), "\n".join(many)


# -- authentication -----------------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/api/v1/workflows", None),
    ("post", "/api/v1/workflows", {"workspace_uuid": "{ws}", "name": "x"}),
    ("get", "/api/v1/workflows/{wf}", None),
    ("put", "/api/v1/workflows/{wf}", {"name": "x"}),
    ("delete", "/api/v1/workflows/{wf}", None),
    ("post", "/api/v1/workflows/{wf}/favorite", None),
    ("delete", "/api/v1/workflows/{wf}/favorite", None),
    ("get", "/api/v1/node-types", None),
]


@pytest.mark.parametrize("method, template, body", ENDPOINTS)
def test_every_endpoint_needs_a_live_token(client, method, template, body):
    owner = make_user()
    workspace = make_workspace(owner)
    workflow = make_workflow(workspace, owner, name="Untouched")
    path = template.format(wf=workflow.uuid)
    if body:
        body = {k: v.format(ws=workspace.uuid) for k, v in body.items()}
    for headers in ({}, {"Authorization": "Bearer " + "x" * 40}, revoked_headers(owner)):
        assert assert_json_error(getattr(client, method)(path, json=body, headers=headers), 401)["message"] == \
            "Unauthenticated."
    db.session.expire_all()
    assert db.session.execute(db.select(Workflow.name, Workflow.deleted_at)).all() == [("Untouched", None)]
    assert db.session.execute(db.select(db.func.count()).select_from(WorkflowFavorite)).scalar_one() == 0
