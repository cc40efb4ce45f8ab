"""Workspace scoping: every query goes through here. Another workspace's object is a 404;
a viewer's write is a 403."""
from __future__ import annotations

import functools

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, select
from sqlalchemy.orm import joinedload

from athena.errors import Forbidden, NotFound
from athena.extensions import db
from athena.models import WRITE_ROLES, User, Workflow, WorkflowExecution, Workspace, WorkspaceMember

NOT_FOUND = "Resource not found."
FORBIDDEN = "This action is unauthorized."


def like_pattern(search: str) -> str:
    """A ``%search%`` LIKE pattern matching ``search`` literally (use with ``escape="\\"``)."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def member_workspace_ids(user: User) -> Select:
    """A subquery of the ids of live workspaces the user belongs to."""
    return _member_workspace_ids(user.id)


def _member_workspace_ids(user_id: int | BindParameter) -> Select:
    return (
        select(WorkspaceMember.workspace_id)
        .join(Workspace, Workspace.id == WorkspaceMember.workspace_id)
        .where(WorkspaceMember.user_id == user_id, Workspace.deleted_at.is_(None))
    )


def role_in(user: User, workspace_id: int) -> str | None:
    return db.session.execute(
        select(WorkspaceMember.role).where(
            WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.user_id == user.id
        )
    ).scalar_one_or_none()


def require_write(user: User, workspace_id: int) -> None:
    if role_in(user, workspace_id) not in WRITE_ROLES:
        raise Forbidden(FORBIDDEN)


def require_owner(user: User, workspace_id: int) -> None:
    if role_in(user, workspace_id) != "owner":
        raise Forbidden(FORBIDDEN)


def _member_workspace(user: User, uuid: str) -> Select:
    return select(Workspace).where(
        Workspace.uuid == uuid, Workspace.deleted_at.is_(None), Workspace.id.in_(member_workspace_ids(user)))


def member_workspace_id_list(user: User, uuid: str) -> list[int]:
    """A filter's workspace: ``[its id]`` when the user is a member of it, else ``[]`` (an unknown,
    malformed or foreign uuid in a filter matches nothing; it is not a 404)."""
    return list(db.session.execute(_member_workspace(user, uuid).with_only_columns(Workspace.id)).scalars())


def get_workspace(user: User, uuid: str, *, write: bool = False) -> Workspace:
    workspace = db.session.execute(_member_workspace(user, uuid)).scalar_one_or_none()
    if workspace is None:
        raise NotFound(NOT_FOUND)
    if write:
        require_write(user, workspace.id)
    return workspace


def _not_someone_elses_private(user: User) -> ColumnElement[bool]:
    return _not_private_of_another(user.id)


def _not_private_of_another(user_id: int | BindParameter) -> ColumnElement[bool]:
    return (Workflow.visibility != "private") | (Workflow.user_id == user_id)


def visible_workflows(user: User) -> Select:
    """Workflows the user may see: live ones in their workspaces; private ones only their own."""
    return _visible_workflows(user.id)


def _visible_workflows(user_id: int | BindParameter) -> Select:
    return select(Workflow).where(
        Workflow.deleted_at.is_(None),
        Workflow.workspace_id.in_(_member_workspace_ids(user_id)),
        _not_private_of_another(user_id),
    )


@functools.cache
def _workflow_with_role(lock: bool) -> Select:
    """One visible workflow by uuid, with the user's role in its workspace (built once: this
    runs on every trigger)."""
    user_id = bindparam("user_id")
    role = (select(WorkspaceMember.role)
            .where(WorkspaceMember.workspace_id == Workflow.workspace_id, WorkspaceMember.user_id == user_id)
            .scalar_subquery())
    query = (_visible_workflows(user_id).where(Workflow.uuid == bindparam("uuid")).add_columns(role)
             .options(joinedload(Workflow.workspace).lazyload(Workspace.organization)))  # loaded if asked for
    return query.with_for_update() if lock else query


def get_workflow(user: User, uuid: str, *, write: bool = False, lock: bool = False) -> Workflow:
    """The workflow (404 if the user may not see it); with ``write``, 403 unless the user's role
    allows writing (the role comes with the workflow, in the same query)."""
    row = db.session.execute(_workflow_with_role(lock), {"user_id": user.id, "uuid": uuid}).one_or_none()
    if row is None:
        raise NotFound(NOT_FOUND)
    workflow, user_role = row
    if write and user_role not in WRITE_ROLES:
        raise Forbidden(FORBIDDEN)
    return workflow


def visible_execution_filters(user: User) -> tuple:
    """Executions the user may see: live ones in their workspaces, of workflows they may see (a
    private workflow's executions only by its owner, like the workflow itself; deleted workflows
    keep their history)."""
    return (
        WorkflowExecution.deleted_at.is_(None),
        WorkflowExecution.workspace_id.in_(member_workspace_ids(user)),
        WorkflowExecution.workflow_id.in_(select(Workflow.id).where(
            Workflow.workspace_id.in_(member_workspace_ids(user)), _not_someone_elses_private(user)
        )),
    )


def visible_executions(user: User) -> Select:
    return select(WorkflowExecution).where(*visible_execution_filters(user))


def get_execution(user: User, uuid: str, *, write: bool = False) -> WorkflowExecution:
    execution = db.session.execute(
        visible_executions(user).where(WorkflowExecution.uuid == uuid)
    ).scalar_one_or_none()
    if execution is None:
        raise NotFound(NOT_FOUND)
    if write:
        require_write(user, execution.workspace_id)
    return execution
