"""GET /workflow-executions: every documented filter and option over seeded executions, checked
against a Python oracle (tests/executions/seeding.py)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from athena.timeutil import iso
from tests.executions.seeding import (
    D,
    DOCUMENTED_DATA_KEYS,
    DOCUMENTED_EXECUTION_KEYS,
    DOCUMENTED_WORKFLOW_KEYS,
    URL,
    _check,
    _list,
    _uuids,
)
from tests.factories import headers_for


# -- scope filters ---------------------------------------------------------------------------

def check_a_scope_filter_is_required(client, seed):
    for query in ("", "status=completed", "search=ACME", "user_multiplai_id=user-alice", "page=1"):
        response = client.get(f"{URL}?{query}", headers=seed.headers)
        assert response.status_code == 422, (query, response.json)
        assert "message" in response.json and "errors" in response.json


def check_workspace_uuid(client, seed):
    ws = seed.workspaces
    _check(client, seed, f"workspace_uuid={ws['a1'].uuid}", lambda r: r.workspace == "a1")
    _check(client, seed, f"workspace_uuid={ws['a2'].uuid}", lambda r: r.workspace == "a2")
    _check(client, seed, f"workspace_uuid={ws['b1'].uuid}", lambda r: r.workspace == "b1")


def check_another_workspace_matches_nothing(client, seed):
    """A workspace filter the caller is not a member of, or that does not exist, is a filter that
    matches nothing (not a 404: the documented example sends ids like ``uuid1``); it never leaks."""
    for workspace_uuid in (seed.workspaces["a3"].uuid, seed.workspaces["b2"].uuid, "no-such-workspace"):
        response = client.get(f"{URL}?workspace_uuid={workspace_uuid}", headers=seed.headers)
        assert response.status_code == 200, response.json
        assert (response.json["data"], response.json["meta"]["total"]) == ([], 0)
        # and the count endpoint agrees
        response = client.get(f"{URL}/count?workspace_uuid={workspace_uuid}"
                              "&start_date=2025-01-01&end_date=2025-12-31", headers=seed.headers)
        assert (response.status_code, response.json["data"]["count"]) == (200, 0)


def check_organization_multiplai_id_never_leaks_other_workspaces(client, seed):
    _check(client, seed, "organization_multiplai_id=org-a", lambda r: r.workspace in ("a1", "a2"))
    _check(client, seed, "organization_multiplai_id=org-b", lambda r: r.workspace == "b1")
    body = _list(client, seed, "organization_multiplai_id=org-a&search=ACME")
    # e8 (org A, workspace a3) and e10 (org B, b2) match the search but alice is not a member there
    assert seed.keys(_uuids(body)) == {"e1"}
    assert _list(client, seed, "organization_multiplai_id=no-such-org")["data"] == []
    # bob sees a3 through the same organization filter: the filter is per caller
    bob = headers_for(seed.users["bob"])
    body = _list(client, seed, "organization_multiplai_id=org-a", headers=bob)
    assert seed.keys(_uuids(body)) == {"e1", "e2", "e3", "e4", "e5", "e12", "e8"}


def check_workspace_wins_over_organization(client, seed):
    ws = seed.workspaces
    _check(client, seed, f"workspace_uuid={ws['a2'].uuid}&organization_multiplai_id=org-b",
           lambda r: r.workspace == "a2")
    _check(client, seed, f"organization_multiplai_id=org-a&workspace_uuid={ws['b1'].uuid}",
           lambda r: r.workspace == "b1")


def check_workflow_uuid_and_workflow_uuids(client, seed):
    wf = seed.workflows
    _check(client, seed, f"workflow_uuid={wf['wf1'].uuid}", lambda r: r.workflow == "wf1")
    _check(client, seed, f"workflow_uuids={wf['wf1'].uuid}&workflow_uuids={wf['wf3'].uuid}",
           lambda r: r.workflow in ("wf1", "wf3"))
    _check(client, seed, f"workflow_uuids[]={wf['wf2'].uuid}&workflow_uuids[]={wf['wf5'].uuid}",
           lambda r: r.workflow in ("wf2", "wf5"))
    _check(client, seed, f"workflow_uuids%5B%5D={wf['wf3'].uuid}", lambda r: r.workflow == "wf3")
    _check(client, seed, f"workflow_uuids[]={wf['wf1'].uuid}&workflow_uuids={wf['wf3'].uuid}",
           lambda r: r.workflow in ("wf1", "wf3"))
    # combined with a workspace: both must hold
    _check(client, seed, f"workflow_uuid={wf['wf3'].uuid}&workspace_uuid={seed.workspaces['a1'].uuid}",
           lambda r: False)
    # a workflow of a workspace alice is not in: nothing, never its executions
    _check(client, seed, f"workflow_uuid={wf['wf4'].uuid}", lambda r: False)
    _check(client, seed, f"workflow_uuids[]={wf['wf4'].uuid}&workflow_uuids[]={wf['wf6'].uuid}", lambda r: False)


def check_user_multiplai_id(client, seed):
    org = "organization_multiplai_id=org-a"
    _check(client, seed, f"{org}&user_multiplai_id=user-bob",
           lambda r: r.workspace in ("a1", "a2") and r.user == "bob")
    _check(client, seed, f"{org}&user_multiplai_id=user-alice",
           lambda r: r.workspace in ("a1", "a2") and r.user == "alice")
    _check(client, seed, f"{org}&user_multiplai_id=nobody", lambda r: False)


def check_status_and_mode(client, seed):
    org = "organization_multiplai_id=org-a"
    for status in ("pending", "running", "waiting", "paused", "completed", "failed", "cancelled"):
        _check(client, seed, f"{org}&status={status}",
               lambda r, s=status: r.workspace in ("a1", "a2") and r.status == s)
    _check(client, seed, f"{org}&mode=webhook", lambda r: r.workspace in ("a1", "a2") and r.mode == "webhook")
    assert client.get(f"{URL}?{org}&status=bogus", headers=seed.headers).status_code == 422


def check_search_execution_content(client, seed):
    org = "organization_multiplai_id=org-a"
    cases = {
        "acme": {"e1"},                 # input, case-insensitive
        "fortytwo": {"e1"},             # output
        "boom timeout": {"e2"},         # error
        "café": {"e5"},                 # non-ASCII output, stored escaped by some drivers
        'said "hi"': {"e6"},            # quotes, stored escaped in JSON
        "100%": {"e7"},                 # LIKE wildcards are literal
        "%": {"e7"},
        "_": set(),                     # not a one-character wildcard
        seed.row("e4").uuid[:13]: {"e4"},  # the uuid
        "nothing-like-this": set(),
    }
    for term, keys in cases.items():
        body = client.get(URL, query_string={"organization_multiplai_id": "org-a", "search": term},
                          headers=seed.headers)
        assert body.status_code == 200, body.json
        assert seed.keys(_uuids(body.json)) == keys, (term, seed.keys(_uuids(body.json)))
    _check(client, seed, f"{org}&search=ACME&status=failed", lambda r: False)


def check_sort(client, seed):
    rows = [r for r in seed.visible() if r.workspace in ("a1", "a2")]
    for sort_by in ("created_at", "updated_at"):
        for direction in ("asc", "desc", None):
            query = f"organization_multiplai_id=org-a&sort_by={sort_by}"
            if direction:
                query += f"&sort_direction={direction}"
            body = _list(client, seed, query)
            ordered = sorted(rows, key=lambda r: getattr(r, sort_by), reverse=(direction or "desc") == "desc")
            assert [item["uuid"] for item in body["data"]] == [r.uuid for r in ordered], query
            assert [item[sort_by] for item in body["data"]] == [iso(getattr(r, sort_by)) for r in ordered]


def check_default_sort_is_created_at_desc_and_bad_sorts_are_422(client, seed):
    body = _list(client, seed, "organization_multiplai_id=org-a")
    created = [item["created_at"] for item in body["data"]]
    assert created == sorted(created, reverse=True)
    for query in ("sort_by=status", "sort_by=id", "sort_direction=up"):
        assert client.get(f"{URL}?organization_multiplai_id=org-a&{query}", headers=seed.headers).status_code == 422


def check_date_from_and_date_to_are_inclusive_days(client, seed):
    org = "organization_multiplai_id=org-a"
    in_org = ("a1", "a2")
    # e3 at 2025-01-03T23:59:59.999999 and e4 at 2025-01-04T00:00:00 are in; e5 at 2025-01-05T00:00:00 is not
    _check(client, seed, f"{org}&date_from=2025-01-03&date_to=2025-01-04",
           lambda r: r.workspace in in_org and r.key in ("e3", "e4"))
    _check(client, seed, f"{org}&date_from=2025-01-01&date_to=2025-01-01",
           lambda r: r.workspace in in_org and r.key == "e1")
    _check(client, seed, f"{org}&date_from=2025-01-05",
           lambda r: r.workspace in in_org and r.created_at >= D("2025-01-05T00:00:00"))
    _check(client, seed, f"{org}&date_to=2025-01-02",
           lambda r: r.workspace in in_org and r.created_at < D("2025-01-03T00:00:00"))
    _check(client, seed, f"{org}&date_from=2025-01-09", lambda r: False)
    assert client.get(f"{URL}?{org}&date_from=yesterday", headers=seed.headers).status_code == 422


# -- with= and with_count= ---------------------------------------------------------------------

def check_relations_are_absent_unless_asked_for(client, seed):
    body = _list(client, seed, "organization_multiplai_id=org-a")
    for item in body["data"]:
        assert DOCUMENTED_EXECUTION_KEYS <= set(item), DOCUMENTED_EXECUTION_KEYS - set(item)
        assert "workflow" not in item
        assert "workflow_execution_data" not in item
        assert "workflow_approvals_count" not in item and "pending_workflow_approvals_count" not in item
        row = next(r for r in seed.rows if r.uuid == item["uuid"])
        assert item["status"] == row.status and item["mode"] == row.mode
        assert item["is_finished"] is (row.status in ("completed", "failed", "cancelled"))
        assert item["created_at"] == iso(row.created_at) and item["created_at"].endswith("Z")
        assert item["deleted_at"] is None


def check_with_workflow_embeds_the_documented_workflow(client, seed):
    body = _list(client, seed, "organization_multiplai_id=org-a&with=workflow")
    assert body["data"]
    for item in body["data"]:
        row = next(r for r in seed.rows if r.uuid == item["uuid"])
        workflow = item["workflow"]
        assert DOCUMENTED_WORKFLOW_KEYS <= set(workflow), DOCUMENTED_WORKFLOW_KEYS - set(workflow)
        assert workflow["uuid"] == seed.workflows[row.workflow].uuid
        assert workflow["workspace_id"] == seed.workspaces[row.workspace].id
        assert workflow["is_owner"] is True  # alice owns wf1..wf3
        assert workflow["executions_count"] == len(
            [r for r in seed.rows if r.workflow == row.workflow and not r.deleted])
        assert "workflow_execution_data" not in item


def check_with_workflow_execution_data(client, seed):
    body = _list(client, seed, "workspace_uuid=" + seed.workspaces["a1"].uuid + "&with=workflowExecutionData")
    assert body["data"]
    for item in body["data"]:
        row = next(r for r in seed.rows if r.uuid == item["uuid"])
        data = item["workflow_execution_data"]
        assert isinstance(data, list) and len(data) == 1
        assert DOCUMENTED_DATA_KEYS <= set(data[0])
        assert data[0]["workflow_data"][0]["node_id"] == "start"
        assert data[0]["workflow_data"][0]["output"] == row.execution.input
        assert data[0]["metadata"]["execution_time"] == 1500
        assert "workflow" not in item
    both = _list(client, seed, "workspace_uuid=" + seed.workspaces["a1"].uuid + "&with=workflow,workflowExecutionData")
    assert all("workflow" in item and "workflow_execution_data" in item for item in both["data"])
    assert client.get(f"{URL}?organization_multiplai_id=org-a&with=approvals", headers=seed.headers).status_code == 422


def check_with_count_approvals(client, seed):
    body = _list(client, seed, "organization_multiplai_id=org-a&with_count=workflowApprovals,pendingWorkflowApprovals")
    assert body["data"]
    for item in body["data"]:
        row = next(r for r in seed.rows if r.uuid == item["uuid"])
        assert item["workflow_approvals_count"] == len(row.approvals), row.key
        assert item["pending_workflow_approvals_count"] == row.approvals.count("pending"), row.key
    assert {seed.row("e4").uuid: (3, 2), seed.row("e12").uuid: (1, 0)} == {
        item["uuid"]: (item["workflow_approvals_count"], item["pending_workflow_approvals_count"])
        for item in body["data"] if item["uuid"] in (seed.row("e4").uuid, seed.row("e12").uuid)}

    only_pending = _list(client, seed, "organization_multiplai_id=org-a&with_count=pendingWorkflowApprovals")
    for item in only_pending["data"]:
        assert "pending_workflow_approvals_count" in item and "workflow_approvals_count" not in item
    assert client.get(f"{URL}?organization_multiplai_id=org-a&with_count=bogus",
                      headers=seed.headers).status_code == 422

    single = client.get(f"{URL}/{seed.row('e4').uuid}?with=workflow,workflowExecutionData"
                        "&with_count=workflowApprovals,pendingWorkflowApprovals", headers=seed.headers)
    assert single.status_code == 200
    data = single.json["data"]
    assert data["workflow_approvals_count"] == 3 and data["pending_workflow_approvals_count"] == 2
    assert data["workflow"]["uuid"] == seed.workflows["wf2"].uuid and len(data["workflow_execution_data"]) == 1


# -- pagination --------------------------------------------------------------------------------

def check_pagination_meta_and_links(client, seed):
    org = "organization_multiplai_id=org-a"
    rows = sorted([r for r in seed.visible() if r.workspace in ("a1", "a2")], key=lambda r: r.created_at, reverse=True)
    assert len(rows) == 8
    seen = []
    for page, (start, end) in enumerate([(1, 3), (4, 6), (7, 8)], start=1):
        response = client.get(f"{URL}?{org}&per_page=3&page={page}", headers=seed.headers)
        assert response.status_code == 200
        body = response.json
        meta, links = body["meta"], body["links"]
        assert meta == {"current_page": page, "from": start, "last_page": 3, "per_page": 3, "to": end,
                        "total": 8, "path": "http://localhost/api/v1/workflow-executions"}
        assert [item["uuid"] for item in body["data"]] == [r.uuid for r in rows[start - 1:end]]
        seen += [item["uuid"] for item in body["data"]]
        for name, target in (("first", 1), ("last", 3), ("prev", page - 1), ("next", page + 1)):
            link = links[name]
            if target < 1 or target > 3:
                assert link is None, (name, link)
                continue
            parsed = parse_qs(urlparse(link).query)
            assert parsed["page"] == [str(target)], (name, link)
            assert parsed["organization_multiplai_id"] == ["org-a"] and parsed["per_page"] == ["3"]
    assert len(seen) == len(set(seen)) == 8

    beyond = client.get(f"{URL}?{org}&per_page=3&page=4", headers=seed.headers).json
    assert beyond["data"] == [] and beyond["meta"]["from"] is None and beyond["meta"]["to"] is None
    assert beyond["meta"]["total"] == 8 and beyond["links"]["next"] is None
    default = client.get(f"{URL}?{org}", headers=seed.headers).json
    assert default["meta"]["per_page"] == 20 and default["meta"]["current_page"] == 1
    for bad in ("per_page=0", "per_page=101", "page=0", "page=x"):
        assert client.get(f"{URL}?{org}&{bad}", headers=seed.headers).status_code == 422, bad


def check_viewer_can_list(client, seed):
    viewer = headers_for(seed.users["victor"])
    body = _list(client, seed, f"workspace_uuid={seed.workspaces['a1'].uuid}", headers=viewer)
    assert seed.keys(_uuids(body)) == {"e1", "e2", "e3", "e4", "e5", "e12"}
    # the organization filter for victor only covers a1
    body = _list(client, seed, "organization_multiplai_id=org-a", headers=viewer)
    assert seed.keys(_uuids(body)) == {"e1", "e2", "e3", "e4", "e5", "e12"}


# -- the tests: one seed each (seeding and cleaning cost more than the requests) ---------------

def test_scope_filters(client, seed):
    check_a_scope_filter_is_required(client, seed)
    check_workspace_uuid(client, seed)
    check_another_workspace_matches_nothing(client, seed)
    check_organization_multiplai_id_never_leaks_other_workspaces(client, seed)
    check_workspace_wins_over_organization(client, seed)
    check_workflow_uuid_and_workflow_uuids(client, seed)
    check_user_multiplai_id(client, seed)


def test_status_mode_and_search(client, seed):
    check_status_and_mode(client, seed)
    check_search_execution_content(client, seed)


def test_sort_and_date_range(client, seed):
    check_sort(client, seed)
    check_default_sort_is_created_at_desc_and_bad_sorts_are_422(client, seed)
    check_date_from_and_date_to_are_inclusive_days(client, seed)


def test_with_and_with_count(client, seed):
    check_relations_are_absent_unless_asked_for(client, seed)
    check_with_workflow_embeds_the_documented_workflow(client, seed)
    check_with_workflow_execution_data(client, seed)
    check_with_count_approvals(client, seed)


def test_pagination_and_viewer(client, seed):
    check_pagination_meta_and_links(client, seed)
    check_viewer_can_list(client, seed)
