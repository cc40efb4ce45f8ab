"""The documented list and count queries over executions, always scoped to the caller."""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

from flask_smorest import abort
from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import selectinload

from athena.extensions import db
from athena.models import Organization, User, Workflow, WorkflowApproval, WorkflowExecution, Workspace
from athena.services.access import (
    get_workspace, member_workspace_ids, visible_execution_filters, visible_executions,
)
from athena.services.workflows import annotate as annotate_workflows
from athena.schemas.executions import dump_included_data, dump_included_workflow

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


def list_query(user: User, args: dict):
    workflow_uuids = list(args.get("workflow_uuids") or []) + list(args.get("workflow_uuids_brackets") or [])
    if args.get("workflow_uuid"):
        workflow_uuids.append(args["workflow_uuid"])
    if not (args.get("workspace_uuid") or args.get("organization_multiplai_id") or workflow_uuids):
        abort(422, message=SCOPE_REQUIRED, errors={"workspace_uuid": [SCOPE_REQUIRED]})
    query = visible_executions(user)
    if args.get("workspace_uuid"):  # wins over organization_multiplai_id
        query = query.where(WorkflowExecution.workspace_id == get_workspace(user, args["workspace_uuid"]).id)
    elif args.get("organization_multiplai_id"):
        query = query.where(WorkflowExecution.workspace_id.in_(
            _organization_workspaces(user, args["organization_multiplai_id"])))
    if workflow_uuids:
        query = query.where(WorkflowExecution.workflow_id.in_(
            select(Workflow.id).where(Workflow.uuid.in_(workflow_uuids))))
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
    query = query.options(selectinload(WorkflowExecution.workflow).joinedload(Workflow.workspace))
    if "workflowExecutionData" in wanted:
        query = query.options(selectinload(WorkflowExecution.execution_data))
    return query


# Transient attributes ``include`` sets on the instances for ExecutionSchema to dump.
INCLUDED_ATTRIBUTES = ("included_workflow", "included_data", "workflow_approvals_count",
                       "pending_workflow_approvals_count", "parent_uuid")


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
            execution.included_workflow = dump_included_workflow(execution.workflow)
    if "workflowExecutionData" in wanted:
        for execution in executions:
            execution.included_data = dump_included_data(execution.execution_data)
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
    parents = {e.parent_execution_id for e in executions if e.parent_execution_id}
    if parents:
        uuids = dict(db.session.execute(
            select(WorkflowExecution.id, WorkflowExecution.uuid).where(WorkflowExecution.id.in_(parents))).all())
        for execution in executions:
            execution.parent_uuid = uuids.get(execution.parent_execution_id)
    return executions


def count(user: User, args: dict) -> int:
    if not (args.get("workspace_uuid") or args.get("multiplai_id")):
        message = "workspace_uuid or multiplai_id is required."
        abort(422, message=message, errors={"workspace_uuid": [message]})
    query = select(func.count()).select_from(WorkflowExecution).where(*visible_execution_filters(user))
    if args.get("workspace_uuid"):
        query = query.where(WorkflowExecution.workspace_id == get_workspace(user, args["workspace_uuid"]).id)
    else:
        query = query.where(WorkflowExecution.workspace_id.in_(_organization_workspaces(user, args["multiplai_id"])))
    query = query.where(WorkflowExecution.created_at >= _day_start(args["start_date"]),
                        WorkflowExecution.created_at < _day_start(args["end_date"] + timedelta(days=1)))
    for flag in ("status", "requires_human_review", "has_command_room_task"):
        if flag in args:
            query = query.where(getattr(WorkflowExecution, flag) == args[flag])
    return db.session.execute(query).scalar_one()
