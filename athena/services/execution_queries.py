"""The documented list and count queries over executions, always scoped to the caller."""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

from sqlalchemy import String, cast, false, func, or_, select
from sqlalchemy.orm import selectinload

from athena.errors import Invalid
from athena.extensions import db
from athena.models import Organization, User, Workflow, WorkflowApproval, WorkflowExecution, Workspace
from athena.services.access import member_workspace_id_list, member_workspace_ids
from athena.services.workflows import annotate as annotate_workflows

SCOPE_REQUIRED = "At least one of workspace_uuid, organization_multiplai_id, workflow_uuid or workflow_uuids is required."


def _day_start(value: date) -> datetime:
    return datetime.combine(value, time.min)


def _organization_workspaces(user: User, multiplai_id: str):
    return (
        select(Workspace.id)
        .join(Organization, Organization.id == Workspace.organization_id)
        .where(Organization.multiplai_id == multiplai_id, Workspace.id.in_(member_workspace_ids(user)))
    )


def _like(term: str) -> str:
    """A LIKE pattern matching ``term`` literally (``%`` and ``_`` are not wildcards here)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search_clause(term: str):
    """Case-insensitive substring search over the execution's content: uuid, input, output, error.

    JSON columns are searched in their stored text, where the term may appear JSON-escaped
    (quotes, backslashes; non-ASCII as ``\\uXXXX`` with SQLite's serializer)."""
    json_terms = {term, json.dumps(term)[1:-1], json.dumps(term, ensure_ascii=False)[1:-1]}
    clauses = [WorkflowExecution.uuid.ilike(_like(term), escape="\\"),
               WorkflowExecution.error.ilike(_like(term), escape="\\")]
    for candidate in json_terms:
        pattern = _like(candidate)
        clauses.append(cast(WorkflowExecution.input, String).ilike(pattern, escape="\\"))
        clauses.append(cast(WorkflowExecution.output, String).ilike(pattern, escape="\\"))
    return or_(*clauses)


def _one_of(column, ids: list[int]):
    """``column IN ids`` as the planner likes it best: ``= id`` for one (the index keeps its order),
    a constant false for none."""
    if not ids:
        return false()
    return column == ids[0] if len(ids) == 1 else column.in_(ids)


def _not_someone_elses_private(user: User):
    """A workflow the user may see (within a workspace they are a member of). Both columns are NOT
    NULL, so the negation is exactly the hidden ones."""
    return (Workflow.visibility != "private") | (Workflow.user_id == user.id)


def _scope(user: User, workspace_ids: list[int] | None, workflow_uuids: list[str]) -> list:
    """The WHERE clauses that scope executions to what ``user`` may see, within ``workspace_ids``
    (already access-checked: workspaces the user is a member of; None: all of them) and, when
    given, of the workflows ``workflow_uuids``.

    Same rows as ``access.visible_execution_filters`` (live executions in the user's workspaces,
    of workflows the user may see: not someone else's private one; deleted workflows keep their
    history), but resolved up front into a few ids, so that the list, its total and the count
    run on the partial indexes alone instead of evaluating member/workflow subqueries per row.
    An execution's workspace is its workflow's (services/executions.create_execution is the only
    place executions are made, and a workflow never moves), so scoping by workflow scopes by
    workspace too, and a workspace's hidden executions are those of its hidden workflows."""
    filters = [WorkflowExecution.deleted_at.is_(None)]
    if workflow_uuids:
        in_scope = (Workflow.workspace_id.in_(workspace_ids) if workspace_ids is not None
                    else Workflow.workspace_id.in_(member_workspace_ids(user)))
        ids = sorted(db.session.execute(select(Workflow.id).where(
            Workflow.uuid.in_(workflow_uuids), in_scope, _not_someone_elses_private(user))).scalars())
        filters.append(_one_of(WorkflowExecution.workflow_id, ids))
        return filters
    assert workspace_ids is not None, "a workspace or workflow scope is required"
    filters.append(_one_of(WorkflowExecution.workspace_id, workspace_ids))
    if workspace_ids:
        hidden = sorted(db.session.execute(select(Workflow.id).where(
            Workflow.workspace_id.in_(workspace_ids), ~_not_someone_elses_private(user))).scalars())
        if hidden:  # other members' private workflows; workflow_id is in the index, so still index-only
            filters.append(WorkflowExecution.workflow_id.not_in(hidden))
    return filters


def list_query(user: User, args: dict):
    workflow_uuids = list(args.get("workflow_uuids") or []) + list(args.get("workflow_uuids_brackets") or [])
    if args.get("workflow_uuid"):
        workflow_uuids.append(args["workflow_uuid"])
    if not (args.get("workspace_uuid") or args.get("organization_multiplai_id") or workflow_uuids):
        raise Invalid(SCOPE_REQUIRED, errors={"workspace_uuid": [SCOPE_REQUIRED]})
    if args.get("workspace_uuid"):  # wins over organization_multiplai_id
        workspace_ids = member_workspace_id_list(user, args["workspace_uuid"])
    elif args.get("organization_multiplai_id"):
        workspace_ids = list(db.session.execute(
            _organization_workspaces(user, args["organization_multiplai_id"])).scalars())
    else:
        workspace_ids = None
    query = select(WorkflowExecution).where(*_scope(user, workspace_ids, workflow_uuids))
    if args.get("user_multiplai_id"):
        query = query.where(WorkflowExecution.user_id.in_(
            select(User.id).where(User.multiplai_id == args["user_multiplai_id"])))
    if args.get("status"):
        query = query.where(WorkflowExecution.status == args["status"])
    if args.get("mode"):
        query = query.where(WorkflowExecution.mode == args["mode"])
    if args.get("search"):
        query = query.where(_search_clause(args["search"]))
    if args.get("date_from"):
        query = query.where(WorkflowExecution.created_at >= _day_start(args["date_from"]))
    if args.get("date_to"):
        query = query.where(WorkflowExecution.created_at < _day_start(args["date_to"] + timedelta(days=1)))
    column = getattr(WorkflowExecution, args.get("sort_by", "created_at"))
    if args.get("sort_direction", "desc") == "asc":
        return query.order_by(column.asc(), WorkflowExecution.id.asc())
    return query.order_by(column.desc(), WorkflowExecution.id.desc())


def with_options(query, args: dict):
    """Eager-load what ``with=`` asks for (one query per relation, never one per row)."""
    wanted = {part.strip() for part in (args.get("with_") or "").split(",") if part.strip()}
    query = query.options(selectinload(WorkflowExecution.workflow).joinedload(Workflow.workspace),
                          selectinload(WorkflowExecution.parent).load_only(WorkflowExecution.uuid))
    if "workflowExecutionData" in wanted:
        query = query.options(selectinload(WorkflowExecution.execution_data))
    return query


# Transient attributes ``include`` sets on the instances for ExecutionSchema to dump.
INCLUDED_ATTRIBUTES = ("included_workflow", "included_data", "workflow_approvals_count",
                       "pending_workflow_approvals_count")


def include(user: User, executions: list[WorkflowExecution], args: dict) -> list[WorkflowExecution]:
    wanted = {part.strip() for part in (args.get("with_") or "").split(",") if part.strip()}
    counts = {part.strip() for part in (args.get("with_count") or "").split(",") if part.strip()}
    if not executions:
        return executions
    for execution in executions:  # an instance reused from the session must not keep another call's extras
        for name in INCLUDED_ATTRIBUTES:
            execution.__dict__.pop(name, None)
    if "workflow" in wanted:
        annotate_workflows(user, list({e.workflow.id: e.workflow for e in executions}.values()))
        for execution in executions:
            execution.included_workflow = execution.workflow
    if "workflowExecutionData" in wanted:
        for execution in executions:
            data = execution.execution_data
            execution.included_data = [data] if data is not None else []
    if counts:
        ids = [e.id for e in executions]
        rows = db.session.execute(
            select(WorkflowApproval.workflow_execution_id, WorkflowApproval.status, func.count())
            .where(WorkflowApproval.workflow_execution_id.in_(ids))
            .group_by(WorkflowApproval.workflow_execution_id, WorkflowApproval.status)
        ).all()
        for execution in executions:
            mine = {status: n for eid, status, n in rows if eid == execution.id}
            if "workflowApprovals" in counts:
                execution.workflow_approvals_count = sum(mine.values())
            if "pendingWorkflowApprovals" in counts:
                execution.pending_workflow_approvals_count = mine.get("pending", 0)
    return executions


def count(user: User, args: dict) -> int:
    if not (args.get("workspace_uuid") or args.get("multiplai_id")):
        message = "workspace_uuid or multiplai_id is required."
        raise Invalid(message, errors={"workspace_uuid": [message]})
    if args.get("workspace_uuid"):
        workspace_ids = member_workspace_id_list(user, args["workspace_uuid"])
    else:
        workspace_ids = list(db.session.execute(_organization_workspaces(user, args["multiplai_id"])).scalars())
    query = select(func.count()).select_from(WorkflowExecution).where(*_scope(user, workspace_ids, []))
    query = query.where(WorkflowExecution.created_at >= _day_start(args["start_date"]),
                        WorkflowExecution.created_at < _day_start(args["end_date"] + timedelta(days=1)))
    for flag in ("status", "requires_human_review", "has_command_room_task"):
        if flag in args:
            query = query.where(getattr(WorkflowExecution, flag) == args[flag])
    return db.session.execute(query).scalar_one()
