"""Workspaces (API Reference -> Workspace) and their members."""
from __future__ import annotations

import uuid as uuid_lib

import pytest

from athena.extensions import db
from athena.models import Workspace, WorkspaceMember
from tests.api.helpers import TIMESTAMP, assert_json_error, count_statements, revoked_headers
from tests.factories import headers_for, make_user, make_workspace

BASE = "/api/v1/workspaces"


def _team():
    owner, editor, viewer, outsider = make_user(), make_user(), make_user(), make_user()
    workspace = make_workspace(owner, "Team", members={editor: "editor", viewer: "viewer"})
    return owner, editor, viewer, outsider, workspace


# -- list ---------------------------------------------------------------------------------------

def test_list_is_paginated_laravel_style(client):
    user = make_user()
    for name in ("Alpha", "Beta", "Gamma"):
        make_workspace(user, name)
    make_workspace(make_user(), "Not mine")
    headers = headers_for(user)

    first = client.get(f"{BASE}?per_page=2", headers=headers)
    assert first.status_code == 200
    assert [w["name"] for w in first.json["data"]] == ["Alpha", "Beta"]
    meta, links = first.json["meta"], first.json["links"]
    assert meta == {"current_page": 1, "from": 1, "last_page": 2, "per_page": 2, "to": 2, "total": 3,
                    "path": "http://localhost/api/v1/workspaces"}
    assert "page=1" in links["first"] and "per_page=2" in links["first"]
    assert "page=2" in links["last"]
    assert links["prev"] is None
    assert "page=2" in links["next"]

    second = client.get(f"{BASE}?per_page=2&page=2", headers=headers)
    assert [w["name"] for w in second.json["data"]] == ["Gamma"]
    assert second.json["meta"]["from"] == 3 and second.json["meta"]["to"] == 3
    assert "page=1" in second.json["links"]["prev"] and second.json["links"]["next"] is None

    beyond = client.get(f"{BASE}?per_page=2&page=9", headers=headers)
    assert beyond.json["data"] == []
    assert beyond.json["meta"]["from"] is None and beyond.json["meta"]["to"] is None
    assert beyond.json["meta"]["total"] == 3


@pytest.mark.parametrize("query", ["per_page=101", "per_page=0", "page=0", "page=abc", "per_page=-1"])
def test_list_rejects_bad_paging(client, query):
    user = make_user()
    body = assert_json_error(client.get(f"{BASE}?{query}", headers=headers_for(user)), 422)
    assert set(body["errors"]) <= {"page", "per_page"} and body["errors"]


def test_list_search_matches_literally(client):
    user = make_user()
    make_workspace(user, "Sales 100%")
    make_workspace(user, "Sales 1000")
    make_workspace(user, "Support")
    headers = headers_for(user)
    names = lambda q: [w["name"] for w in client.get(f"{BASE}?search={q}", headers=headers).json["data"]]  # noqa: E731
    assert names("sales") == ["Sales 100%", "Sales 1000"]
    assert names("100%25") == ["Sales 100%"]  # a literal %, not a wildcard
    assert names("S_les") == []


def test_list_shows_role_and_member_count_without_n_plus_one(client):
    user = make_user()
    others = [make_user() for _ in range(3)]
    make_workspace(user, "Mine", members={others[0]: "editor"})
    make_workspace(others[1], "Theirs", members={user: "viewer", others[2]: "editor"})
    headers = headers_for(user)
    data = {w["name"]: w for w in client.get(BASE, headers=headers).json["data"]}
    assert (data["Mine"]["role"], data["Mine"]["members_count"]) == ("owner", 2)
    assert (data["Theirs"]["role"], data["Theirs"]["members_count"]) == ("viewer", 3)

    with count_statements() as few:
        client.get(BASE, headers=headers)
    for i in range(20):
        make_workspace(make_user(), f"Shared {i}", members={user: "editor"})
    with count_statements() as many:
        assert len(client.get(f"{BASE}?per_page=100", headers=headers).json["data"]) == 22
    assert len(many) == len(few)


# -- create / retrieve / update / delete --------------------------------------------------------

def test_create_makes_the_caller_owner(client):
    user = make_user()
    response = client.post(BASE, json={"name": "Ops", "description": "Operations"}, headers=headers_for(user))
    assert response.status_code == 201, response.json
    data = response.json["data"]
    assert (data["name"], data["description"], data["role"], data["members_count"]) == ("Ops", "Operations", "owner", 1)
    assert data["user_id"] == user.id
    for key in ("created_at", "updated_at"):
        assert TIMESTAMP.match(data[key]), data[key]
    assert data["deleted_at"] is None
    member = db.session.execute(db.select(WorkspaceMember).where(WorkspaceMember.user_id == user.id)).scalar_one()
    assert member.role == "owner"
    fetched = client.get(f"{BASE}/{data['uuid']}", headers=headers_for(user))
    assert fetched.status_code == 200 and fetched.json["data"]["uuid"] == data["uuid"]


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"name": None}, "name"),
    ({"name": "ok", "user_id": 99}, "user_id"),  # no mass assignment
])
def test_create_validates(client, body, field):
    response = client.post(BASE, json=body, headers=headers_for(make_user()))
    assert field in assert_json_error(response, 422)["errors"]


def test_retrieve_update_as_members(client):
    owner, editor, viewer, _, workspace = _team()
    got = client.get(f"{BASE}/{workspace.uuid}", headers=headers_for(viewer))
    assert got.status_code == 200
    assert (got.json["data"]["role"], got.json["data"]["members_count"]) == ("viewer", 3)
    assert TIMESTAMP.match(got.json["data"]["created_at"])

    updated = client.put(f"{BASE}/{workspace.uuid}", json={"name": "Renamed", "description": None},
                         headers=headers_for(editor))
    assert updated.status_code == 200, updated.json
    assert (updated.json["data"]["name"], updated.json["data"]["description"]) == ("Renamed", None)
    assert updated.json["data"]["role"] == "editor"
    db.session.expire_all()
    assert db.session.get(Workspace, workspace.id).name == "Renamed"

    assert "name" in assert_json_error(
        client.put(f"{BASE}/{workspace.uuid}", json={"name": ""}, headers=headers_for(owner)), 422)["errors"]


def test_soft_delete_keeps_the_row(client):
    owner = make_user()
    workspace = make_workspace(owner, "Doomed")
    headers = headers_for(owner)
    response = client.delete(f"{BASE}/{workspace.uuid}", headers=headers)
    assert response.status_code == 204 and response.get_data() == b""
    db.session.expire_all()
    row = db.session.get(Workspace, workspace.id)
    assert row is not None and row.deleted_at is not None
    assert_json_error(client.get(f"{BASE}/{workspace.uuid}", headers=headers), 404)
    assert_json_error(client.delete(f"{BASE}/{workspace.uuid}", headers=headers), 404)
    assert workspace.uuid not in [w["uuid"] for w in client.get(BASE, headers=headers).json["data"]]


def test_viewer_and_editor_write_limits(client):
    owner, editor, viewer, _, workspace = _team()
    viewer_h, editor_h = headers_for(viewer), headers_for(editor)
    url = f"{BASE}/{workspace.uuid}"
    members = f"{url}/members"
    writes = [
        ("put", url, {"name": "nope"}),
        ("delete", url, None),
        ("post", members, {"email": make_user().email, "role": "viewer"}),
        ("put", f"{members}/{editor.uuid}", {"role": "viewer"}),
        ("delete", f"{members}/{editor.uuid}", None),
    ]
    for method, path, body in writes:
        assert_json_error(getattr(client, method)(path, json=body, headers=viewer_h), 403)
    # editors may edit the workspace but not delete it or manage members (owners only)
    for method, path, body in writes[1:]:
        target = path.replace(editor.uuid, viewer.uuid)
        assert_json_error(getattr(client, method)(target, json=body, headers=editor_h), 403)
    db.session.expire_all()
    ws = db.session.get(Workspace, workspace.id)
    assert ws.name == "Team" and ws.deleted_at is None
    roles = dict(db.session.execute(
        db.select(WorkspaceMember.user_id, WorkspaceMember.role).where(WorkspaceMember.workspace_id == workspace.id)
    ).all())
    assert roles == {owner.id: "owner", editor.id: "editor", viewer.id: "viewer"}


def test_other_workspaces_are_404(client):
    owner, editor, _, outsider, workspace = _team()
    make_workspace(outsider, "Outsider's own")
    headers = headers_for(outsider)
    url = f"{BASE}/{workspace.uuid}"
    for method, path, body in [
        ("get", url, None),
        ("put", url, {"name": "pwned"}),
        ("delete", url, None),
        ("get", f"{url}/members", None),
        ("post", f"{url}/members", {"email": outsider.email, "role": "owner"}),
        ("put", f"{url}/members/{editor.uuid}", {"role": "owner"}),
        ("delete", f"{url}/members/{owner.uuid}", None),
    ]:
        assert_json_error(getattr(client, method)(path, json=body, headers=headers), 404)
    assert workspace.uuid not in [w["uuid"] for w in client.get(BASE, headers=headers).json["data"]]
    assert_json_error(client.get(f"{BASE}/{uuid_lib.uuid4()}", headers=headers), 404)
    db.session.expire_all()
    assert db.session.get(Workspace, workspace.id).name == "Team"


# -- members ------------------------------------------------------------------------------------

def test_member_flow(client):
    owner = make_user()
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    workspace = make_workspace(owner, "Crew")
    headers = headers_for(owner)
    members = f"{BASE}/{workspace.uuid}/members"

    listed = client.get(members, headers=headers)
    assert listed.status_code == 200
    assert [(m["user_uuid"], m["role"]) for m in listed.json["data"]] == [(owner.uuid, "owner")]
    assert TIMESTAMP.match(listed.json["data"][0]["created_at"])

    added = client.post(members, json={"email": "ALICE@example.com", "role": "editor"}, headers=headers)
    assert added.status_code == 201, added.json
    assert added.json["data"] == {**added.json["data"], "user_uuid": alice.uuid, "email": "alice@example.com",
                                  "role": "editor"}
    assert_json_error(client.post(members, json={"email": "alice@example.com", "role": "viewer"}, headers=headers),
                      409)
    assert "email" in assert_json_error(
        client.post(members, json={"email": "nobody@example.com", "role": "viewer"}, headers=headers), 404)["errors"]
    assert "role" in assert_json_error(
        client.post(members, json={"email": "bob@example.com", "role": "king"}, headers=headers), 422)["errors"]
    assert client.post(members, json={"email": "bob@example.com", "role": "viewer"}, headers=headers).status_code == 201

    # Alice can now see the workspace; Bob can read but not write
    assert client.get(f"{BASE}/{workspace.uuid}", headers=headers_for(alice)).json["data"]["role"] == "editor"

    changed = client.put(f"{members}/{bob.uuid}", json={"role": "owner"}, headers=headers)
    assert changed.status_code == 200 and changed.json["data"]["role"] == "owner"
    assert_json_error(client.put(f"{members}/{uuid_lib.uuid4()}", json={"role": "viewer"}, headers=headers), 404)

    # two owners: the first may step down; then Bob is the last owner and can't
    assert client.put(f"{members}/{owner.uuid}", json={"role": "editor"}, headers=headers).status_code == 200
    bob_h = headers_for(bob)
    assert_json_error(client.put(f"{members}/{bob.uuid}", json={"role": "editor"}, headers=bob_h), 409)
    assert_json_error(client.delete(f"{members}/{bob.uuid}", headers=bob_h), 409)

    removed = client.delete(f"{members}/{alice.uuid}", headers=bob_h)
    assert removed.status_code == 204 and removed.get_data() == b""
    assert_json_error(client.delete(f"{members}/{alice.uuid}", headers=bob_h), 404)
    assert_json_error(client.get(f"{BASE}/{workspace.uuid}", headers=headers_for(alice)), 404)
    final = {m["user_uuid"]: m["role"] for m in client.get(members, headers=bob_h).json["data"]}
    assert final == {owner.uuid: "editor", bob.uuid: "owner"}


def test_removing_the_only_owner_is_409(client):
    owner = make_user()
    workspace = make_workspace(owner, "Solo", members={make_user(): "editor"})
    headers = headers_for(owner)
    assert_json_error(client.delete(f"{BASE}/{workspace.uuid}/members/{owner.uuid}", headers=headers), 409)
    assert_json_error(client.put(f"{BASE}/{workspace.uuid}/members/{owner.uuid}", json={"role": "viewer"},
                                 headers=headers), 409)
    db.session.expire_all()
    assert db.session.execute(
        db.select(WorkspaceMember.role).where(WorkspaceMember.user_id == owner.id)
    ).scalar_one() == "owner"


# -- authentication -----------------------------------------------------------------------------

ENDPOINTS = [
    ("get", "{base}", None),
    ("post", "{base}", {"name": "x"}),
    ("get", "{base}/{ws}", None),
    ("put", "{base}/{ws}", {"name": "x"}),
    ("delete", "{base}/{ws}", None),
    ("get", "{base}/{ws}/members", None),
    ("post", "{base}/{ws}/members", {"email": "a@example.com", "role": "viewer"}),
    ("put", "{base}/{ws}/members/{user}", {"role": "viewer"}),
    ("delete", "{base}/{ws}/members/{user}", None),
]


@pytest.mark.parametrize("method, template, body", ENDPOINTS)
def test_every_endpoint_needs_a_live_token(client, method, template, body):
    owner = make_user()
    workspace = make_workspace(owner)
    path = template.format(base=BASE, ws=workspace.uuid, user=owner.uuid)
    call = getattr(client, method)
    for headers in ({}, {"Authorization": "Bearer"}, revoked_headers(owner)):
        body_ = assert_json_error(call(path, json=body, headers=headers), 401)
        assert body_["message"] == "Unauthenticated."
    db.session.expire_all()
    assert db.session.get(Workspace, workspace.id).deleted_at is None
