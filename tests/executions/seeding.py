"""Executions seeded directly with the models for the list and count tests, with a small Python
oracle over them (``Seed.expect``) and request helpers. ``seed`` is a fixture (tests/executions/conftest.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import pytest

from athena.extensions import db
from athena.models import Organization, WorkflowApproval, WorkflowExecution, WorkflowExecutionData
from athena.redis_client import get_redis
from athena.services.leases import lease_key
from athena.timeutil import iso
from tests.factories import headers_for, make_user, make_workflow, make_workspace

URL = "/api/v1/workflow-executions"

DOCUMENTED_EXECUTION_KEYS = {
    "id", "uuid", "is_finished", "mode", "retry_of", "retry_success_id", "started_at", "stopped_at",
    "wait_till", "status", "created_at", "updated_at", "deleted_at",
}
DOCUMENTED_WORKFLOW_KEYS = {
    "id", "uuid", "user_id", "workspace_id", "template_id", "name", "description", "profile_photo_url",
    "profile_photo_config", "visibility", "is_active", "is_owner", "is_favorite", "trigger_count",
    "allow_cloning", "allow_account_usage", "last_used_at", "created_at", "updated_at", "deleted_at",
    "executions_count", "executions_in_progress_count", "executions_for_review_count",
    "executions_completed_count",
}
DOCUMENTED_DATA_KEYS = {"uuid", "workflow_data", "metadata", "data", "created_at", "updated_at", "deleted_at"}


@dataclass
class Row:
    key: str
    execution: WorkflowExecution
    workspace: str
    workflow: str
    user: str
    status: str
    mode: str
    created_at: datetime
    updated_at: datetime
    approvals: list[str] = field(default_factory=list)
    requires_human_review: bool = False
    has_command_room_task: bool = False
    deleted: bool = False

    @property
    def uuid(self) -> str:
        return self.execution.uuid


@dataclass
class Seed:
    users: dict[str, Any]
    orgs: dict[str, Any]
    workspaces: dict[str, Any]
    workflows: dict[str, Any]
    rows: list[Row]
    alice_workspaces: set[str]
    headers: dict[str, str]

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    def visible(self) -> list[Row]:
        """What alice may ever see: live executions of workspaces she is a member of."""
        return [r for r in self.rows if not r.deleted and r.workspace in self.alice_workspaces]

    def expect(self, predicate: Callable[[Row], bool]) -> set[str]:
        return {r.uuid for r in self.visible() if predicate(r)}

    def keys(self, uuids) -> set[str]:
        by_uuid = {r.uuid: r.key for r in self.rows}
        return {by_uuid[u] for u in uuids}


def D(text: str) -> datetime:  # noqa: N802 - reads like a literal
    return datetime.fromisoformat(text)


# key, workspace, workflow, user, status, mode, created_at, input, output, error, extras
PLAN = [
    ("e1", "a1", "wf1", "alice", "completed", "manual", "2025-01-01T00:00:00", {"customer": "ACME corp"},
     {"total": "FortyTwo"}, None, {}),
    ("e2", "a1", "wf1", "bob", "failed", "webhook", "2025-01-02T12:00:00", {"customer": "Globex"}, None,
     "node 'fetch': boom timeout", {}),
    ("e3", "a1", "wf1", "alice", "running", "api", "2025-01-03T23:59:59.999999", {"n": 3}, None, None,
     {"has_command_room_task": True}),
    ("e4", "a1", "wf2", "bob", "paused", "manual", "2025-01-04T00:00:00", {"n": 4}, None, None,
     {"approvals": ["pending", "pending", "approved"]}),
    ("e5", "a1", "wf2", "alice", "completed", "schedule", "2025-01-05T00:00:00", None, {"note": "café au lait"},
     None, {}),
    ("e6", "a2", "wf3", "alice", "pending", "manual", "2025-01-06T10:00:00", {"say": 'she said "hi"'}, None,
     None, {}),
    ("e7", "a2", "wf3", "alice", "waiting", "child", "2025-01-07T10:00:00", {"discount": "100% off"}, None,
     None, {}),
    ("e8", "a3", "wf4", "bob", "completed", "manual", "2025-01-03T10:00:00", {"customer": "ACME corp"}, None,
     None, {}),
    ("e9", "b1", "wf5", "carol", "cancelled", "manual", "2025-01-03T11:00:00", {"customer": "ACME corp"},
     None, None, {}),
    ("e10", "b2", "wf6", "carol", "completed", "manual", "2025-01-03T12:00:00", {"customer": "ACME corp"},
     None, None, {}),
    ("e11", "a1", "wf1", "alice", "completed", "manual", "2025-01-03T13:00:00", {"customer": "ACME corp"},
     None, None, {"deleted": True}),
    ("e12", "a1", "wf2", "bob", "paused", "manual", "2025-01-08T09:30:00", {"n": 12}, None, None,
     {"approvals": ["approved"], "requires_human_review": True}),
]


@pytest.fixture
def seed() -> Seed:
    org_a = Organization(name="Org A", multiplai_id="org-a")
    org_b = Organization(name="Org B", multiplai_id="org-b")
    db.session.add_all([org_a, org_b])
    db.session.commit()
    users = {
        "alice": make_user(organization=org_a, multiplai_id="user-alice"),
        "bob": make_user(organization=org_a, multiplai_id="user-bob"),
        "carol": make_user(organization=org_b, multiplai_id="user-carol"),
        "victor": make_user(organization=org_a, multiplai_id="user-victor"),
    }
    alice, bob, carol, victor = (users[k] for k in ("alice", "bob", "carol", "victor"))
    workspaces = {
        "a1": make_workspace(alice, members={bob: "editor", victor: "viewer"}),
        "a2": make_workspace(alice),
        "a3": make_workspace(bob),  # org A, but alice is not a member
        "b1": make_workspace(carol, members={alice: "editor"}),
        "b2": make_workspace(carol),  # org B, alice is not a member
    }
    assert workspaces["a3"].organization_id == org_a.id and workspaces["b2"].organization_id == org_b.id
    owner = {"a1": alice, "a2": alice, "a3": bob, "b1": carol, "b2": carol}
    homes = {"wf1": "a1", "wf2": "a1", "wf3": "a2", "wf4": "a3", "wf5": "b1", "wf6": "b2"}
    workflows = {key: make_workflow(workspaces[ws], owner[ws], name=f"Workflow {key}") for key, ws in homes.items()}

    rows = []
    for index, (key, ws, wf, user, status, mode, created, input_, output, error, extras) in enumerate(PLAN):
        created_at = D(created)
        # updated_at runs the other way round, so the two sorts disagree
        updated_at = D(f"2025-02-{28 - index:02d}T08:00:00")
        execution = WorkflowExecution(
            workflow_id=workflows[wf].id, workspace_id=workspaces[ws].id, user_id=users[user].id,
            status=status, mode=mode, is_finished=status in ("completed", "failed", "cancelled"),
            input=input_, output=output, error=error, created_at=created_at, updated_at=updated_at,
            started_at=created_at if status != "pending" else None,
            requires_human_review=extras.get("requires_human_review", False),
            has_command_room_task=extras.get("has_command_room_task", False),
            deleted_at=D("2025-01-20T00:00:00") if extras.get("deleted") else None,
        )
        db.session.add(execution)
        db.session.flush()
        db.session.add(WorkflowExecutionData(
            workflow_execution_id=execution.id,
            workflow_data=[{"node_id": "start", "type": "manual", "status": "success", "output": input_,
                            "error": None, "handle": None, "started_at": iso(created_at),
                            "stopped_at": iso(created_at), "attempts": 1}],
            meta={"running_node": None, "execution_time": 1500, "processed_count": 1, "error_count": 0,
                  "retry_count": 0},
            data={"nodes": workflows[wf].nodes, "edges": workflows[wf].edges, "variables": {}},
        ))
        for n, approval_status in enumerate(extras.get("approvals", [])):
            db.session.add(WorkflowApproval(workflow_execution_id=execution.id, node_id=f"approve{n}",
                                            status=approval_status))
        rows.append(Row(key, execution, ws, wf, user, status, mode, created_at, updated_at,
                        approvals=list(extras.get("approvals", [])),
                        requires_human_review=extras.get("requires_human_review", False),
                        has_command_room_task=extras.get("has_command_room_task", False),
                        deleted=bool(extras.get("deleted"))))
    db.session.commit()
    # A seeded ``running`` execution has a live worker, as a real one would: else the session
    # worker's sweeper takes it for an orphan and continues it (changing its updated_at).
    redis = get_redis()
    for row in rows:
        if row.status == "running":
            redis.set(lease_key(row.execution.uuid), "seeded", ex=3600)
    return Seed(users, {"a": org_a, "b": org_b}, workspaces, workflows, rows, {"a1", "a2", "b1"},
                headers_for(alice))


def _list(client, seed: Seed, query: str, status: int = 200, headers=None) -> dict:
    response = client.get(f"{URL}?{query}&per_page=100" if query else URL, headers=headers or seed.headers)
    assert response.status_code == status, (query, response.status_code, response.json)
    return response.json


def _uuids(body: dict) -> set[str]:
    uuids = [item["uuid"] for item in body["data"]]
    assert len(uuids) == len(set(uuids)), "duplicates in a page"
    return set(uuids)


def _check(client, seed: Seed, query: str, predicate: Callable[[Row], bool]) -> dict:
    body = _list(client, seed, query)
    expected = seed.expect(predicate)
    assert _uuids(body) == expected, (query, sorted(seed.keys(_uuids(body))), sorted(seed.keys(expected)))
    assert body["meta"]["total"] == len(expected)
    return body
