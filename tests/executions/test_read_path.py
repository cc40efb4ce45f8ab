"""The read path of GET /workflow-executions and /count (services/execution_queries.py): the
scope is resolved to ids up front (no member/workflow subquery per row), pages are a deferred
join, and other members' private workflows stay out of every scope, total and count."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import event

from athena.extensions import db
from athena.models import Organization, WorkflowExecution
from athena.services.executions import create_execution
from tests.executions.seeding import URL
from tests.factories import headers_for, make_user, make_workflow, make_workspace

BASE = datetime(2025, 3, 1, 12, 0, 0)


def _add(workflow, user, minutes: int, *, deleted: bool = False) -> WorkflowExecution:
    created = BASE + timedelta(minutes=minutes)
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workflow.workspace_id, user_id=user.id,
                                  status="completed", is_finished=True, mode="manual", created_at=created,
                                  updated_at=created, deleted_at=BASE if deleted else None)
    db.session.add(execution)
    return execution


@pytest.fixture
def team():
    org = Organization(name="Read path", multiplai_id="org-read-path")
    db.session.add(org)
    db.session.commit()
    alice, bob = make_user(organization=org), make_user(organization=org)
    outsider = make_user(organization=org)
    workspace = make_workspace(alice, members={bob: "editor"})
    other = make_workspace(outsider)
    flows = {
        "shared": make_workflow(workspace, alice, name="shared"),
        "public": make_workflow(workspace, bob, name="public", visibility="public"),
        "alice_private": make_workflow(workspace, alice, name="alice private", visibility="private"),
        "bob_private": make_workflow(workspace, bob, name="bob private", visibility="private"),
        "bob_private_gone": make_workflow(workspace, bob, name="bob private, deleted", visibility="private"),
        "elsewhere": make_workflow(other, outsider, name="elsewhere"),
    }
    flows["bob_private_gone"].deleted_at = BASE  # a deleted workflow keeps its (private) history
    rows: dict[str, list[WorkflowExecution]] = {key: [] for key in flows}
    minute = 0
    for round_ in range(4):
        for key, workflow in flows.items():
            owner = bob if key.startswith(("bob", "public")) else (outsider if key == "elsewhere" else alice)
            # every other round, two executions share a created_at: the id breaks the tie
            minute += 0 if round_ % 2 and key == "public" else 1
            rows[key].append(_add(workflow, owner, minute))
    rows["shared"].append(_add(flows["shared"], alice, 1000, deleted=True))
    db.session.commit()
    return {"alice": alice, "bob": bob, "outsider": outsider, "workspace": workspace, "other": other,
            "flows": flows, "rows": rows, "org": org}


def _expected(team, keys) -> list[str]:
    """Live executions of these workflows in the list's order: created_at desc, then id desc."""
    live = [e for key in keys for e in team["rows"][key] if e.deleted_at is None]
    return [e.uuid for e in sorted(live, key=lambda e: (e.created_at, e.id), reverse=True)]


def _all_pages(client, headers, query: str, per_page: int = 3) -> tuple[list[str], int]:
    seen, page, total = [], 1, None
    while True:
        response = client.get(f"{URL}?{query}&per_page={per_page}&page={page}", headers=headers)
        assert response.status_code == 200, response.json
        body = response.json
        total = body["meta"]["total"] if total is None else total
        assert body["meta"]["total"] == total
        if not body["data"]:
            assert page == body["meta"]["last_page"] + 1 or total == 0
            return seen, total
        assert body["meta"]["from"] == (page - 1) * per_page + 1
        assert body["meta"]["to"] == (page - 1) * per_page + len(body["data"])
        seen += [item["uuid"] for item in body["data"]]
        page += 1


def _count(client, headers, query: str) -> int:
    response = client.get(f"{URL}/count?{query}&start_date=2025-01-01&end_date=2025-12-31", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"]["count"]


VISIBLE_TO = {
    "alice": ("shared", "public", "alice_private"),
    "bob": ("shared", "public", "bob_private", "bob_private_gone"),
}


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_every_scope_leaves_out_other_members_private_workflows(client, team, who):
    headers = headers_for(team[who])
    flows, workspace = team["flows"], team["workspace"]
    expected = _expected(team, VISIBLE_TO[who])
    for scope in (f"workspace_uuid={workspace.uuid}", f"organization_multiplai_id={team['org'].multiplai_id}"):
        seen, total = _all_pages(client, headers, scope)
        assert (seen, total) == (expected, len(expected)), scope
        seen, total = _all_pages(client, headers, scope + "&sort_direction=asc", per_page=4)
        assert (seen, total) == (list(reversed(expected)), len(expected)), scope
    assert _count(client, headers, f"workspace_uuid={workspace.uuid}") == len(expected)
    assert _count(client, headers, f"multiplai_id={team['org'].multiplai_id}") == len(expected)
    # by workflow: one's own and shared ones, never someone else's private one or another workspace's
    everything = "&".join(f"workflow_uuids[]={flow.uuid}" for flow in flows.values())
    seen, total = _all_pages(client, headers, everything)
    assert (seen, total) == (expected, len(expected))
    for key, flow in flows.items():
        seen, total = _all_pages(client, headers, f"workflow_uuid={flow.uuid}", per_page=2)
        mine = _expected(team, [key]) if key in VISIBLE_TO[who] else []
        assert (seen, total) == (mine, len(mine)), key
        both = _all_pages(client, headers, f"workflow_uuid={flow.uuid}&workspace_uuid={workspace.uuid}")
        assert both == (mine, len(mine)), key


def test_the_scope_is_the_callers(client, team):
    outsider = headers_for(team["outsider"])
    assert _all_pages(client, outsider, f"workspace_uuid={team['workspace'].uuid}") == ([], 0)
    response = client.get(f"{URL}/count?workspace_uuid={team['workspace'].uuid}"
                          "&start_date=2025-01-01&end_date=2025-12-31", headers=outsider)
    assert (response.status_code, response.json["data"]["count"]) == (200, 0)
    shared = team["flows"]["shared"].uuid
    assert _all_pages(client, outsider, f"workflow_uuid={shared}") == ([], 0)
    elsewhere = _expected(team, ["elsewhere"])
    assert _all_pages(client, outsider, f"organization_multiplai_id={team['org'].multiplai_id}") == \
        (elsewhere, len(elsewhere))
    # alice asking for the outsider's workspace's workflow alongside her own: only hers
    alice = headers_for(team["alice"])
    query = f"workflow_uuids[]={shared}&workflow_uuids[]={team['flows']['elsewhere'].uuid}"
    assert _all_pages(client, alice, query) == (_expected(team, ["shared"]), 4)


def test_a_page_carries_its_relations_and_counts(client, team):
    """The deferred join loads the page's rows by key: with=/with_count= still apply to them."""
    headers = headers_for(team["alice"])
    response = client.get(f"{URL}?workspace_uuid={team['workspace'].uuid}&per_page=2&page=2&with=workflow"
                          "&with_count=workflowApprovals,pendingWorkflowApprovals", headers=headers)
    assert response.status_code == 200
    items = response.json["data"]
    assert [item["uuid"] for item in items] == _expected(team, VISIBLE_TO["alice"])[2:4]
    by_uuid = {e.uuid: key for key, rows in team["rows"].items() for e in rows}
    for item in items:
        flow = team["flows"][by_uuid[item["uuid"]]]
        assert item["workflow"]["uuid"] == item["workflow_uuid"] == flow.uuid
        assert item["workspace_uuid"] == team["workspace"].uuid
        assert (item["workflow_approvals_count"], item["pending_workflow_approvals_count"]) == (0, 0)


def test_an_execution_belongs_to_its_workflows_workspace(team):
    """The read path scopes executions by their own workspace_id and workflow_id and relies on
    this: an execution's workspace is its workflow's, also for a child run from another workspace."""
    shared, elsewhere = team["flows"]["shared"], team["flows"]["elsewhere"]
    parent = create_execution(shared, team["alice"], mode="manual", start=False)
    child = create_execution(elsewhere, team["outsider"], mode="manual", parent=parent, parent_node_id="call",
                             start=False)
    assert (parent.workspace_id, child.workspace_id) == (shared.workspace_id, elsewhere.workspace_id)


def _statements(client, headers, path: str) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "workflow_executions" in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert client.get(path, headers=headers).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen


def test_the_list_and_the_count_read_the_live_indexes(client, team):
    """No per-row membership or workflow subquery, and on SQLite (no statistics, so the plan does
    not depend on the data) the total, the page's keys and the count come from an index alone."""
    headers = headers_for(team["bob"])  # bob has hidden workflows (alice's private one)
    ws = team["workspace"].uuid
    paths = [f"{URL}?workspace_uuid={ws}&per_page=2&page=3&with_count=workflowApprovals",
             f"{URL}?workflow_uuid={team['flows']['shared'].uuid}&per_page=2&page=2",
             f"{URL}/count?workspace_uuid={ws}&start_date=2025-01-01&end_date=2025-12-31"]
    for path in paths:
        statements = _statements(client, headers, path)
        assert statements, path
        for sql, _ in statements:
            assert "workspace_members" not in sql and "FROM workflows" not in sql, (path, sql)
        if db.engine.dialect.name != "sqlite":
            continue
        with db.engine.connect() as conn:
            for sql, parameters in statements:
                if "FROM workflow_executions" not in sql or "workflow_approvals" in sql:
                    continue
                plan = " | ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters))
                assert "SCAN workflow_executions" not in plan, (path, sql, plan)
                if "count(*)" in sql or sql.lstrip().startswith("SELECT workflow_executions.id \nFROM"):
                    assert "USING COVERING INDEX ix_executions_live_" in plan, (path, sql, plan)
                else:  # the page's rows, by key
                    assert "INTEGER PRIMARY KEY" in plan, (path, sql, plan)
