"""GET /workflow-executions/count and the workflow resource's executions_*_count, over seeded
executions (tests/executions/seeding.py)."""
from __future__ import annotations

from tests.executions.seeding import URL


# -- count -----------------------------------------------------------------------------------

def _count(client, seed, query: str, status: int = 200, headers=None):
    response = client.get(f"{URL}/count?{query}", headers=headers or seed.headers)
    assert response.status_code == status, (query, response.json)
    return response.json["data"]["count"] if status == 200 else response.json


def check_count_requires_scope_and_dates(client, seed):
    ws = seed.workspaces["a1"].uuid
    dates = "start_date=2025-01-01&end_date=2025-01-31"
    for query in (dates, f"workspace_uuid={ws}", f"workspace_uuid={ws}&start_date=2025-01-01",
                  f"workspace_uuid={ws}&end_date=2025-01-31", "multiplai_id=org-a&start_date=2025-01-01",
                  f"workspace_uuid={ws}&start_date=x&end_date=2025-01-31"):
        body = _count(client, seed, query, status=422)
        assert "message" in body and "errors" in body


def check_count_filters(client, seed):
    ws = f"workspace_uuid={seed.workspaces['a1'].uuid}"
    january = "start_date=2025-01-01&end_date=2025-01-31"
    in_a1 = lambda r: r.workspace == "a1"  # noqa: E731

    def expected(predicate):
        return len(seed.expect(predicate))

    assert _count(client, seed, f"{ws}&{january}") == expected(in_a1) == 6
    assert _count(client, seed, f"{ws}&start_date=2025-01-03&end_date=2025-01-04") == \
        expected(lambda r: in_a1(r) and r.key in ("e3", "e4")) == 2
    assert _count(client, seed, f"{ws}&start_date=2025-02-01&end_date=2025-02-28") == 0
    for status in ("completed", "paused", "failed", "pending"):
        assert _count(client, seed, f"{ws}&{january}&status={status}") == \
            expected(lambda r, s=status: in_a1(r) and r.status == s), status
    assert _count(client, seed, f"{ws}&{january}&requires_human_review=true") == \
        expected(lambda r: in_a1(r) and r.requires_human_review) == 1
    assert _count(client, seed, f"{ws}&{january}&requires_human_review=false") == 5
    assert _count(client, seed, f"{ws}&{january}&has_command_room_task=true") == \
        expected(lambda r: in_a1(r) and r.has_command_room_task) == 1
    assert _count(client, seed, f"{ws}&{january}&has_command_room_task=false&status=paused") == 2
    # organization multiplai_id: only the caller's workspaces of that organization
    assert _count(client, seed, f"multiplai_id=org-a&{january}") == expected(lambda r: r.workspace in ("a1", "a2")) == 8
    assert _count(client, seed, f"multiplai_id=org-b&{january}") == expected(lambda r: r.workspace == "b1") == 1
    assert _count(client, seed, f"multiplai_id=org-b&{january}&status=completed") == 0
    # workspace wins over the organization here too
    assert _count(client, seed, f"{ws}&multiplai_id=org-b&{january}") == 6
    assert _count(client, seed, f"{ws}&{january}&status=bogus", status=422)


# -- the workflow resource's counters ---------------------------------------------------------

def check_workflow_execution_counters(client, seed):
    for key in ("wf1", "wf2", "wf3", "wf5"):
        response = client.get(f"/api/v1/workflows/{seed.workflows[key].uuid}", headers=seed.headers)
        assert response.status_code == 200, response.json
        data = response.json["data"]
        rows = [r for r in seed.rows if r.workflow == key and not r.deleted]
        assert data["executions_count"] == len(rows), key
        buckets = {"in_progress": ("pending", "running", "waiting"), "for_review": ("paused",),
                   "completed": ("completed",), "failed": ("failed",), "cancelled": ("cancelled",)}
        for bucket, statuses in buckets.items():
            assert data[f"executions_{bucket}_count"] == len([r for r in rows if r.status in statuses]), key
        assert sum(data[f"executions_{bucket}_count"] for bucket in buckets) == data["executions_count"], key
    wf2 = client.get(f"/api/v1/workflows/{seed.workflows['wf2'].uuid}", headers=seed.headers).json["data"]
    assert (wf2["executions_count"], wf2["executions_in_progress_count"], wf2["executions_for_review_count"],
            wf2["executions_completed_count"]) == (3, 0, 2, 1)
    wf1 = client.get(f"/api/v1/workflows/{seed.workflows['wf1'].uuid}", headers=seed.headers).json["data"]
    # e11 is soft-deleted and not counted
    assert (wf1["executions_count"], wf1["executions_in_progress_count"], wf1["executions_for_review_count"],
            wf1["executions_completed_count"]) == (3, 1, 0, 1)
    listed = client.get(f"/api/v1/workflows?workspace_uuid={seed.workspaces['a1'].uuid}", headers=seed.headers)
    by_uuid = {w["uuid"]: w for w in listed.json["data"]}
    assert by_uuid[seed.workflows["wf2"].uuid]["executions_for_review_count"] == 2


# -- the tests: one seed each --------------------------------------------------------------------

def test_count_endpoint(client, seed):
    check_count_requires_scope_and_dates(client, seed)
    check_count_filters(client, seed)


def test_workflow_resource_counters(client, seed):
    check_workflow_execution_counters(client, seed)
