"""Workflows: graph validation on every write, caller-relative flags, derived counters (secrets:
athena/services/secrets.py)."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError

from athena.engine import Graph, GraphValidationError
from athena.errors import Invalid
from athena.extensions import db
from athena.models import COUNTER_BUCKETS, User, Workflow, WorkflowExecution, WorkflowFavorite
from athena.services import schedules
from athena.services.access import get_workspace, like_pattern, visible_workflows
from athena.services.secrets import encrypt_secret, store_variables
from athena.timeutil import utcnow


def validate_graph(nodes: list, edges: list) -> None:
    limit = current_app.config["MAX_NODES_PER_WORKFLOW"]
    if len(nodes) > limit:
        raise Invalid(f"A workflow may have at most {limit} nodes.", errors={"nodes": [f"at most {limit} nodes"]})
    try:
        Graph.parse(nodes, edges)
    except GraphValidationError as exc:
        raise Invalid(str(exc), errors=exc.errors) from exc


def _apply(workflow: Workflow, body: dict) -> None:
    if "nodes" in body or "edges" in body:
        nodes = body.get("nodes", workflow.nodes or [])
        edges = body.get("edges", workflow.edges or [])
        validate_graph(nodes, edges)
        schedules.validate_nodes(nodes)
    if "webhook_secret" in body:  # stored encrypted (HMAC needs the secret back, so no hash)
        body = {**body, "webhook_secret": encrypt_secret(body["webhook_secret"])}
    if "variables" in body:
        body = {**body, "variables": store_variables(workflow.variables, body["variables"])}
    for key, value in body.items():
        setattr(workflow, key, value)


def create_workflow(user: User, body: dict) -> Workflow:
    body = dict(body)
    workspace = get_workspace(user, body.pop("workspace_uuid"), write=True)
    workflow = Workflow(user_id=user.id, workspace_id=workspace.id, nodes=[], edges=[], variables={})
    _apply(workflow, body)
    db.session.add(workflow)
    db.session.commit()
    schedules.sync(workflow, None)
    annotate(user, [workflow])
    return workflow


def update_workflow(user: User, workflow: Workflow, body: dict) -> Workflow:
    previous = schedules.spec_of(workflow)
    _apply(workflow, body)
    db.session.commit()
    schedules.sync(workflow, previous)
    annotate(user, [workflow])
    return workflow


def delete_workflow(workflow: Workflow) -> None:
    previous = schedules.spec_of(workflow)
    workflow.deleted_at = utcnow()
    workflow.is_active = False
    db.session.commit()
    schedules.sync(workflow, previous)


def set_favorite(user: User, workflow: Workflow, favorite: bool) -> Workflow:
    existing = db.session.execute(
        select(WorkflowFavorite).where(WorkflowFavorite.workflow_id == workflow.id, WorkflowFavorite.user_id == user.id)
    ).scalar_one_or_none()
    if favorite and existing is None:
        db.session.add(WorkflowFavorite(workflow_id=workflow.id, user_id=user.id, created_at=utcnow()))
    elif not favorite and existing is not None:
        db.session.delete(existing)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent request favorited it first: the outcome is the same
        db.session.rollback()
    annotate(user, [workflow])
    return workflow


def list_query(user: User, args: dict):
    query = visible_workflows(user)
    if args.get("workspace_uuid"):
        workspace = get_workspace(user, args["workspace_uuid"])
        query = query.where(Workflow.workspace_id == workspace.id)
    if args.get("search"):
        pattern = like_pattern(args["search"])
        query = query.where(
            Workflow.name.ilike(pattern, escape="\\") | Workflow.description.ilike(pattern, escape="\\")
        )
    if args.get("visibility"):
        query = query.where(Workflow.visibility == args["visibility"])
    if "is_active" in args:
        query = query.where(Workflow.is_active.is_(args["is_active"]))
    if "is_favorite" in args:
        favorites = select(WorkflowFavorite.workflow_id).where(WorkflowFavorite.user_id == user.id)
        query = query.where(Workflow.id.in_(favorites) if args["is_favorite"] else Workflow.id.not_in(favorites))
    column = getattr(Workflow, args.get("sort_by", "created_at"))
    direction = args.get("sort_direction", "desc")
    # NULLs (never-used workflows) last either way, the same on SQLite and PostgreSQL.
    order = (column.asc() if direction == "asc" else column.desc()).nulls_last()
    return query.order_by(order, Workflow.id.asc() if direction == "asc" else Workflow.id.desc())


def annotate(user: User, workflows: list[Workflow]) -> list[Workflow]:
    """Set is_owner, is_favorite and executions_count with its buckets (COUNTER_BUCKETS) with two
    grouped queries."""
    if not workflows:
        return workflows
    ids = [w.id for w in workflows]
    favorites = set(
        db.session.execute(
            select(WorkflowFavorite.workflow_id).where(
                WorkflowFavorite.user_id == user.id, WorkflowFavorite.workflow_id.in_(ids)
            )
        ).scalars()
    )
    status = WorkflowExecution.status
    buckets = [func.sum(case((status.in_(statuses), 1), else_=0)) for statuses in COUNTER_BUCKETS.values()]
    rows = db.session.execute(
        select(WorkflowExecution.workflow_id, func.count(), *buckets)
        .where(WorkflowExecution.workflow_id.in_(ids), WorkflowExecution.deleted_at.is_(None))
        .group_by(WorkflowExecution.workflow_id)
    ).all()
    counts = {row[0]: row[1:] for row in rows}
    none = (0,) * (1 + len(COUNTER_BUCKETS))
    for workflow in workflows:
        total, *in_buckets = counts.get(workflow.id, none)
        workflow.is_owner = workflow.user_id == user.id
        workflow.is_favorite = workflow.id in favorites
        workflow.executions_count = int(total or 0)
        for bucket, count in zip(COUNTER_BUCKETS, in_buckets):
            setattr(workflow, f"executions_{bucket}_count", int(count or 0))
    return workflows
