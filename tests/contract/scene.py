"""Real rows for the documented examples, seeded with the models the way
tests/executions/seeding.py does, and kept as plain values (the live server answers from other
threads: the tests read no ORM object after seeding).

One organization (``org-contract``), its users ``owner`` (multiplai_id chosen by the test: the
documented ``user-123`` or not) and ``bob`` (``user-bob``); workspace ``main`` (owner; bob an
editor) with workflows ``wf`` (the one the documented request names) and ``wf2``; workspace
``other`` (owner, same organization) with ``wf3``. Executions of every status, most in January
2025, a few outside it, one with approvals, a parent and its child, a retry pair, a deleted one;
every one with its execution data row."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from athena.extensions import db
from athena.models import Organization, WorkflowApproval, WorkflowExecution, WorkflowExecutionData
from athena.redis_client import get_redis
from athena.services.executions import graph_snapshot
from athena.services.leases import lease_key
from athena.timeutil import iso
from tests.factories import linear_graph, make_user, make_workflow, make_workspace, token_for

ORG_MULTIPLAI_ID = "org-contract"
EXECUTION_TIME_MS = 1500
TERMINAL = ("completed", "failed", "cancelled")

# key, workspace, workflow, user, status, mode, created_at, input, extras
PLAN: list[tuple[str, str, str, str, str, str, str, Any, dict]] = [
    ("done", "main", "wf", "owner", "completed", "manual", "2025-01-02T09:00:00", {"customer": "ACME corp"},
     {"output": {"total": 42}}),
    ("broken", "main", "wf", "bob", "failed", "webhook", "2025-01-05T10:00:00", {"customer": "ACME corp"},
     {"error": "node 'n1': boom"}),
    ("review", "main", "wf", "owner", "paused", "manual", "2025-01-10T11:00:00", {"customer": "ACME corp"},
     {"approvals": ["pending", "pending", "approved"], "requires_human_review": True}),
    ("parent", "main", "wf", "owner", "waiting", "manual", "2025-01-12T12:00:00", {"customer": "ACME corp"}, {}),
    ("child", "main", "wf", "owner", "running", "child", "2025-01-12T12:00:01", {"customer": "ACME corp"},
     {"parent": "parent", "has_command_room_task": True}),
    ("queued", "main", "wf", "owner", "pending", "api", "2025-01-20T08:00:00", {"customer": "Globex"}, {}),
    ("stopped", "main", "wf", "bob", "cancelled", "manual", "2025-01-25T08:00:00", {"customer": "ACME corp"}, {}),
    ("last", "main", "wf", "owner", "completed", "retry", "2025-01-31T23:59:59.999999", {"customer": "ACME corp"},
     {"retry_of": "broken", "output": {"total": 7}}),
    ("december", "main", "wf", "owner", "completed", "manual", "2024-12-31T23:59:59.999999",
     {"customer": "ACME corp"}, {}),
    ("february", "main", "wf", "owner", "failed", "manual", "2025-02-01T00:00:00", {"customer": "ACME corp"},
     {"error": "late"}),
    ("gone", "main", "wf", "owner", "completed", "manual", "2025-01-15T06:00:00", {"customer": "ACME corp"},
     {"deleted": True}),
    ("sibling", "main", "wf2", "owner", "completed", "manual", "2025-01-15T00:00:00", {"customer": "ACME corp"},
     {}),
    ("elsewhere", "other", "wf3", "owner", "completed", "manual", "2025-01-16T00:00:00", {"customer": "ACME corp"},
     {}),
]


@dataclass
class SeededExecution:
    key: str
    id: int
    uuid: str
    workspace: str
    workflow: str
    user: str
    status: str
    mode: str
    created_at: datetime
    input: Any
    output: Any
    error: str | None
    data_id: int
    data_uuid: str
    workflow_data: list
    running_node: str | None
    parent: str | None = None
    retry_of: str | None = None
    approvals: list[str] = field(default_factory=list)
    requires_human_review: bool = False
    has_command_room_task: bool = False
    deleted: bool = False


@dataclass
class Scene:
    token: str
    users: dict[str, dict[str, Any]]  # key -> {"id", "multiplai_id"}
    workspaces: dict[str, dict[str, Any]]  # key -> {"id", "uuid"}
    workflows: dict[str, dict[str, Any]]  # key -> {"id", "uuid", "name", "description", "nodes", "edges", ...}
    executions: list[SeededExecution]

    def row(self, key: str) -> SeededExecution:
        return next(e for e in self.executions if e.key == key)

    def keys(self, items: list[dict]) -> list[str]:
        by_uuid = {e.uuid: e.key for e in self.executions}
        return [by_uuid.get(item["uuid"], item["uuid"]) for item in items]

    def expect(self, *, workspaces=None, workflows=None, user=None, january=False, status=None,
               search=None, ascending=False) -> list[str]:
        """Keys of the live executions matching, in created_at order (desc unless ``ascending``)."""
        rows = [e for e in self.executions if not e.deleted
                and (workspaces is None or e.workspace in workspaces)
                and (workflows is None or e.workflow in workflows)
                and (user is None or e.user == user)
                and (not january or datetime(2025, 1, 1) <= e.created_at < datetime(2025, 2, 1))
                and (status is None or e.status == status)
                and (search is None or search.lower() in str(e.input).lower())]
        rows.sort(key=lambda e: (e.created_at, e.id), reverse=not ascending)
        return [e.key for e in rows]


def seed_scene(owner_multiplai_id: str = "user-owner") -> Scene:
    org = Organization(name="Contract Org", multiplai_id=ORG_MULTIPLAI_ID)
    db.session.add(org)
    db.session.commit()
    users = {"owner": make_user(organization=org, multiplai_id=owner_multiplai_id),
             "bob": make_user(organization=org, multiplai_id="user-bob")}
    workspaces = {"main": make_workspace(users["owner"], name="Main", members={users["bob"]: "editor"}),
                  "other": make_workspace(users["owner"], name="Other")}
    nodes, edges = linear_graph(3)
    workflows = {
        "wf": make_workflow(workspaces["main"], users["owner"], nodes=nodes, edges=edges,
                            name="Customer Onboarding Flow",
                            description="Automated workflow for onboarding new customers",
                            trigger_count=11, last_used_at=datetime(2025, 2, 1), allow_account_usage=True),
        "wf2": make_workflow(workspaces["main"], users["owner"], name="Second flow"),
        "wf3": make_workflow(workspaces["other"], users["owner"], name="Elsewhere flow"),
    }
    seeded: dict[str, tuple[WorkflowExecution, WorkflowExecutionData]] = {}
    for key, ws, wf, user, status, mode, created, input_, extras in PLAN:
        created_at = datetime.fromisoformat(created)
        execution = WorkflowExecution(
            workflow_id=workflows[wf].id, workspace_id=workspaces[ws].id, user_id=users[user].id,
            status=status, mode=mode, is_finished=status in TERMINAL, input=input_,
            output=extras.get("output"), error=extras.get("error"), created_at=created_at, updated_at=created_at,
            started_at=None if status == "pending" else created_at,
            stopped_at=created_at if status in TERMINAL else None,
            requires_human_review=extras.get("requires_human_review", False),
            has_command_room_task=extras.get("has_command_room_task", False),
            parent_execution_id=seeded[extras["parent"]][0].id if "parent" in extras else None,
            parent_node_id="n1" if "parent" in extras else None,
            retry_of=seeded[extras["retry_of"]][0].uuid if "retry_of" in extras else None,
            deleted_at=datetime(2025, 1, 20) if extras.get("deleted") else None,
        )
        db.session.add(execution)
        db.session.flush()
        running_node = "n1" if status in ("running", "paused", "waiting") else None
        data = WorkflowExecutionData(
            workflow_execution_id=execution.id,
            workflow_data=[{"node_id": "start", "type": "manual", "status": "success", "output": input_,
                            "error": None, "handle": None, "started_at": iso(created_at),
                            "stopped_at": iso(created_at), "attempts": 1}],
            meta={"running_node": running_node, "execution_time": EXECUTION_TIME_MS, "processed_count": 1,
                  "error_count": 0, "retry_count": 0},
            data=graph_snapshot(workflows[wf]),
        )
        db.session.add(data)
        for n, approval in enumerate(extras.get("approvals", [])):
            db.session.add(WorkflowApproval(workflow_execution_id=execution.id, node_id=f"approve{n}",
                                            status=approval))
        db.session.flush()
        seeded[key] = (execution, data)
    seeded["broken"][0].retry_success_id = seeded["last"][0].uuid
    db.session.commit()
    # An unfinished seeded execution has a live worker, as a real one would (see
    # tests/executions/seeding.py): else a worker's sweeper, when another test started one, takes
    # it for an orphan (running) or a lost job (pending) and runs it, changing it under the test.
    for execution, _ in seeded.values():
        if execution.status not in TERMINAL:
            get_redis().set(lease_key(execution.uuid), "seeded", ex=3600)

    executions = []
    for key, ws, wf, user, status, mode, created, input_, extras in PLAN:
        execution, data = seeded[key]
        executions.append(SeededExecution(
            key, execution.id, execution.uuid, ws, wf, user, status, mode, execution.created_at, input_,
            extras.get("output"), extras.get("error"), data.id, data.uuid, list(data.workflow_data),
            data.meta["running_node"], parent=extras.get("parent"), retry_of=extras.get("retry_of"),
            approvals=list(extras.get("approvals", [])),
            requires_human_review=extras.get("requires_human_review", False),
            has_command_room_task=extras.get("has_command_room_task", False), deleted=bool(extras.get("deleted"))))
    scene = Scene(
        token=token_for(users["owner"]),
        users={k: {"id": u.id, "multiplai_id": u.multiplai_id} for k, u in users.items()},
        workspaces={k: {"id": w.id, "uuid": w.uuid} for k, w in workspaces.items()},
        workflows={k: {"id": w.id, "uuid": w.uuid, "name": w.name, "description": w.description,
                       "workspace_id": w.workspace_id, "user_id": w.user_id, "nodes": w.nodes, "edges": w.edges,
                       "visibility": w.visibility, "trigger_count": w.trigger_count, "is_active": w.is_active,
                       "allow_cloning": w.allow_cloning, "allow_account_usage": w.allow_account_usage,
                       "created_at": iso(w.created_at), "last_used_at": iso(w.last_used_at)}
                   for k, w in workflows.items()},
        executions=executions,
    )
    db.session.commit()
    db.session.close()  # nothing of this session stays open while the live server answers
    return scene
