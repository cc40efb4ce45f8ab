"""Execution status rules: the transition table, terminal statuses, is_finished, and the
compare-and-set that keeps a late completion from overwriting ``cancelled``."""
from __future__ import annotations

import itertools

import pytest

from athena.extensions import db
from athena.models import STATUSES, WorkflowExecution, WorkflowExecutionData
from athena.runs.lifecycle import transition
from tests.factories import headers_for, make_user, make_workflow, make_workspace

# The life cycle of the contract, written out independently of athena.runs.lifecycle:
# pending -> running -> (waiting | paused) -> running -> completed | failed | cancelled;
# anything not yet finished may be cancelled (stop) or failed (crash/invalid graph).
EXPECTED: dict[str, set[str]] = {
    "pending": {"running", "cancelled", "failed"},
    "running": {"waiting", "paused", "completed", "failed", "cancelled"},
    "waiting": {"running", "cancelled", "failed"},
    "paused": {"running", "cancelled", "failed"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
def scene():
    user = make_user()
    workspace = make_workspace(user)
    workflow = make_workflow(workspace, user)
    return user, workspace, workflow


def _row(workflow, user, status: str) -> WorkflowExecution:
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workflow.workspace_id, user_id=user.id,
                                  status=status, mode="manual", is_finished=status in TERMINAL)
    db.session.add(execution)
    db.session.flush()
    db.session.add(WorkflowExecutionData(workflow_execution_id=execution.id, workflow_data=[], meta={}, data={}))
    db.session.commit()
    return execution


def _stored(execution_id: int) -> WorkflowExecution:
    db.session.expire_all()
    return db.session.get(WorkflowExecution, execution_id)


def test_every_pair_of_statuses_follows_the_table(scene):
    assert set(STATUSES) == set(EXPECTED)  # the documented seven
    user, _, workflow = scene
    checked = 0
    for source, target in itertools.product(STATUSES, STATUSES):
        execution = _row(workflow, user, source)
        allowed = transition(execution.id, target)
        db.session.commit()
        row = _stored(execution.id)
        expected = target in EXPECTED[source]
        assert allowed is expected, f"{source} -> {target}: transition said {allowed}, table says {expected}"
        assert row.status == (target if expected else source), f"{source} -> {target}"
        # is_finished is true exactly for the terminal statuses, whatever the path.
        assert row.is_finished is (row.status in TERMINAL), f"{source} -> {target}: {row.status}"
        if expected and target in TERMINAL:
            assert row.stopped_at is not None and row.wait_till is None
        checked += 1
    assert checked == len(STATUSES) ** 2


def test_terminal_status_never_changes(scene):
    user, _, workflow = scene
    for terminal in sorted(TERMINAL):
        execution = _row(workflow, user, terminal)
        before = _stored(execution.id).updated_at
        for target in STATUSES:
            assert transition(execution.id, target) is False, (terminal, target)
            # only_from cannot widen the table either
            assert transition(execution.id, target, only_from=tuple(STATUSES)) is False, (terminal, target)
            db.session.commit()
        row = _stored(execution.id)
        assert row.status == terminal and row.is_finished is True
        assert row.updated_at == before


def test_only_from_narrows_the_allowed_sources_and_the_life_cycle(scene):
    user, _, workflow = scene
    execution = _row(workflow, user, "waiting")
    assert transition(execution.id, "running", only_from=("paused",)) is False
    db.session.commit()
    assert _stored(execution.id).status == "waiting"
    assert transition(execution.id, "running", only_from=("waiting", "paused")) is True
    db.session.commit()
    assert _stored(execution.id).status == "running"

    # the full life cycle sets is_finished only at the end
    execution = _row(workflow, user, "pending")
    for target in ("running", "waiting", "running", "paused", "running", "completed"):
        assert transition(execution.id, target) is True, target
        db.session.commit()
        row = _stored(execution.id)
        assert row.status == target
        assert row.is_finished is (target == "completed")


def test_late_completion_does_not_overwrite_cancelled(client, scene):
    user, _, workflow = scene
    execution = _row(workflow, user, "running")
    stopped = client.post(f"/api/v1/workflow-executions/{execution.uuid}/stop", headers=headers_for(user))
    assert stopped.status_code == 200, stopped.json
    assert stopped.json["data"]["status"] == "cancelled"
    assert stopped.json["data"]["is_finished"] is True
    assert stopped.json["data"]["stopped_at"] is not None

    # The worker finishing the last node after the stop: a compare-and-set from "running".
    assert transition(execution.id, "completed", only_from=("running",), output={"late": True}) is False
    db.session.commit()
    row = _stored(execution.id)
    assert row.status == "cancelled" and row.is_finished is True
    assert row.output is None
    fetched = client.get(f"/api/v1/workflow-executions/{execution.uuid}", headers=headers_for(user))
    assert fetched.json["data"]["status"] == "cancelled"
