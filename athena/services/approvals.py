"""Approvals (human review): opened when an execution pauses at an ``approval`` node, decided
by a workspace editor/owner or by the timeout.

Every decision is a compare-and-set ``UPDATE ... WHERE status = 'pending'``: the first one wins
(human or timeout) and every later one is a 409. The winner's decision, who made it and the
comment become the node's output when the execution resumes."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, update

from athena.errors import Conflict, NotFound
from athena.runs import wire
from athena.runs.eventlog import event_log_for_app
from athena.extensions import db
from athena.models import TERMINAL_STATUSES, User, WorkflowApproval, WorkflowExecution
from athena.services.access import NOT_FOUND, get_execution
from athena.services.resume import enqueue_resume
from athena.timeutil import iso, utcnow

DECISIONS = ("approved", "rejected")
# A timeout resumption arriving this early (clock skew) still applies the timeout.
EARLY_TOLERANCE = timedelta(seconds=1)

Emit = Callable[..., Any]


def _pending(execution_id: int, node_id: str | None = None) -> Select:
    query = select(WorkflowApproval).where(WorkflowApproval.workflow_execution_id == execution_id,
                                           WorkflowApproval.status == "pending")
    return query.where(WorkflowApproval.node_id == node_id) if node_id is not None else query


def _refresh_review_flag(execution_id: int) -> None:
    """``requires_human_review`` is true exactly while a pending approval remains (same tx)."""
    db.session.execute(
        update(WorkflowExecution).where(WorkflowExecution.id == execution_id)
        .values(requires_human_review=_pending(execution_id).exists())
        .execution_options(synchronize_session=False)
    )


def _user_dict(user: User | None) -> dict[str, Any] | None:
    return {"uuid": user.uuid, "email": user.email, "name": user.name} if user is not None else None


def annotate(approvals: list[WorkflowApproval], execution: WorkflowExecution) -> list[WorkflowApproval]:
    ids = {a.decided_by for a in approvals if a.decided_by}
    users = {u.id: u for u in db.session.execute(select(User).where(User.id.in_(ids))).scalars()} if ids else {}
    for approval in approvals:
        approval.execution_uuid = execution.uuid
        approval.decider = users.get(approval.decided_by)
    return approvals


def decision_payload(approval: WorkflowApproval) -> dict[str, Any]:
    """What the approval node outputs on resume."""
    user = db.session.get(User, approval.decided_by) if approval.decided_by else None
    decision = approval.status if approval.status in DECISIONS else None
    return {"approval_id": approval.uuid, "decision": decision, "comment": approval.comment,
            "user": _user_dict(user), "decided_at": iso(approval.decided_at),
            "timed_out": approval.status == "expired" or (decision is not None and user is None)}


def _event_fields(approval: WorkflowApproval) -> dict[str, Any]:
    return {"approval_id": approval.id, "approval_uuid": approval.uuid, "node_id": approval.node_id,
            "status": approval.status, "message": approval.message, "timeout_at": iso(approval.timeout_at),
            "default_decision": approval.default_decision}


# -- job side ----------------------------------------------------------------------------------
def open_approval(execution_id: int, node_id: str, info: dict[str, Any],
                  timeout_at: datetime | None) -> dict[str, Any] | None:
    """Store a pending approval for a node that paused (in the caller's transaction).

    Idempotent: None if one is already pending for this node; else the event fields."""
    if db.session.execute(_pending(execution_id, node_id)).first() is not None:
        return None
    default = info.get("default_decision")
    approval = WorkflowApproval(workflow_execution_id=execution_id, node_id=node_id, status="pending",
                                message=info.get("message"), timeout_at=timeout_at,
                                default_decision=default if default in DECISIONS else None)
    db.session.add(approval)
    db.session.flush()
    db.session.execute(
        update(WorkflowExecution).where(WorkflowExecution.id == execution_id).values(requires_human_review=True)
        .execution_options(synchronize_session=False)
    )
    return _event_fields(approval)


def resolve_resume(execution_id: int, resume: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Turn the resumption payload of approval nodes into the decision stored on the approval row.

    A resumption of a still-pending approval is its timeout: the default decision (or ``expired``)
    is applied with the same compare-and-set a human decision uses, so only one of them wins."""
    resolved = dict(resume)
    for node_id in resume:
        approval = db.session.execute(
            select(WorkflowApproval).where(WorkflowApproval.workflow_execution_id == execution_id,
                                           WorkflowApproval.node_id == node_id)
            .order_by(WorkflowApproval.id.desc()).limit(1)
        ).scalar_one_or_none()
        if approval is None:
            continue
        if approval.status == "pending":
            now = utcnow()
            if approval.timeout_at is None or approval.timeout_at - EARLY_TOLERANCE > now:
                resolved[node_id] = {"pending": True, "timeout_at": iso(approval.timeout_at)}
                continue
            outcome = approval.default_decision if approval.default_decision in DECISIONS else "expired"
            won = db.session.execute(
                update(WorkflowApproval).where(WorkflowApproval.id == approval.id, WorkflowApproval.status == "pending")
                .values(status=outcome, decided_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount == 1
            _refresh_review_flag(execution_id)
            db.session.commit()
            db.session.refresh(approval)
            if won:
                emit(wire.APPROVAL_DECIDED, **_event_fields(approval), decision=outcome, timed_out=True,
                     comment=None, user=None, decided_at=iso(approval.decided_at))
        resolved[node_id] = decision_payload(approval)
    return resolved


def close_orphans() -> int:
    """Pending approvals of executions that ended (stopped while paused) become ``cancelled``."""
    finished = select(WorkflowExecution.id).where(WorkflowExecution.status.in_(TERMINAL_STATUSES))
    ids = list(db.session.execute(
        select(WorkflowApproval.workflow_execution_id).where(WorkflowApproval.status == "pending",
                                                            WorkflowApproval.workflow_execution_id.in_(finished))
    ).scalars())
    if not ids:
        return 0
    now = utcnow()
    count = db.session.execute(
        update(WorkflowApproval).where(WorkflowApproval.status == "pending",
                                       WorkflowApproval.workflow_execution_id.in_(ids))
        .values(status="cancelled", decided_at=now, updated_at=now).execution_options(synchronize_session=False)
    ).rowcount
    for execution_id in set(ids):
        _refresh_review_flag(execution_id)
    db.session.commit()
    return count


# -- API side ----------------------------------------------------------------------------------
def list_approvals(user: User, execution_uuid: str) -> list[WorkflowApproval]:
    execution = get_execution(user, execution_uuid)
    approvals = list(db.session.execute(
        select(WorkflowApproval).where(WorkflowApproval.workflow_execution_id == execution.id)
        .order_by(WorkflowApproval.id)
    ).scalars())
    return annotate(approvals, execution)


def _find(execution: WorkflowExecution, ref: str) -> WorkflowApproval:
    column = WorkflowApproval.id if (ref.isascii() and ref.isdigit()) and len(ref) < 18 else WorkflowApproval.uuid
    approval = db.session.execute(
        select(WorkflowApproval).where(WorkflowApproval.workflow_execution_id == execution.id,
                                       column == (int(ref) if column is WorkflowApproval.id else ref))
    ).scalar_one_or_none()
    if approval is None:
        raise NotFound(NOT_FOUND)
    return approval


def decide(user: User, execution_uuid: str, ref: str, decision: str, comment: str | None) -> WorkflowApproval:
    """Approve or reject (editor/owner of the workspace). First decision wins; later ones 409."""
    execution = get_execution(user, execution_uuid, write=True)
    approval = _find(execution, ref)
    if approval.status != "pending":
        raise Conflict(f"This approval is already {approval.status}.")
    if execution.status != "paused":
        raise Conflict(f"The execution is {execution.status}: it is not awaiting approval.")
    now = utcnow()
    won = db.session.execute(
        update(WorkflowApproval).where(WorkflowApproval.id == approval.id, WorkflowApproval.status == "pending")
        .values(status=decision, decided_by=user.id, comment=comment, decided_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not won:
        db.session.rollback()
        raise Conflict("This approval was already decided.")
    _refresh_review_flag(execution.id)
    db.session.refresh(approval)
    payload = decision_payload(approval)
    # Appended before the commit, while this transaction holds the approval row: a stop racing
    # the decision cancels the approvals in its own transaction, so it commits (and emits
    # ``execution.finished``) only after this; the decision never follows the execution's end.
    event_log_for_app().append(
        execution.uuid, execution.workflow.workspace.uuid, wire.APPROVAL_DECIDED,
        workflow_uuid=execution.workflow.uuid, **_event_fields(approval), decision=decision,
        timed_out=False, comment=comment, user=payload["user"], decided_at=payload["decided_at"],
    )
    db.session.commit()
    enqueue_resume(execution.id, approval.node_id, payload, job_id=f"athena-approval-{approval.uuid}")
    return annotate([approval], execution)[0]
