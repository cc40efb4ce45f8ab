"""Workspaces and their members; services own the transactions."""
from __future__ import annotations

from sqlalchemy import func, select

from athena.errors import Conflict, NotFound
from athena.extensions import db
from athena.models import User, Workspace, WorkspaceMember
from athena.services.access import like_pattern, member_workspace_ids, require_owner
from athena.timeutil import utcnow


def create_workspace(user: User, name: str, description: str | None = None) -> Workspace:
    workspace = Workspace(
        name=name, description=description, user_id=user.id, organization_id=user.organization_id
    )
    db.session.add(workspace)
    db.session.flush()
    db.session.add(WorkspaceMember(workspace_id=workspace.id, user_id=user.id, role="owner", created_at=utcnow()))
    db.session.commit()
    workspace.current_role = "owner"
    workspace.members_count = 1
    return workspace


def list_query(user: User, search: str | None = None):
    query = select(Workspace).where(Workspace.id.in_(member_workspace_ids(user))).order_by(Workspace.id)
    if search:
        query = query.where(Workspace.name.ilike(like_pattern(search), escape="\\"))
    return query


def annotate_roles(user: User, workspaces: list[Workspace]) -> None:
    if not workspaces:
        return
    rows = db.session.execute(
        select(WorkspaceMember.workspace_id, WorkspaceMember.role).where(
            WorkspaceMember.user_id == user.id, WorkspaceMember.workspace_id.in_([w.id for w in workspaces])
        )
    ).all()
    roles = dict(rows)
    counts = dict(
        db.session.execute(
            select(WorkspaceMember.workspace_id, func.count())
            .where(WorkspaceMember.workspace_id.in_([w.id for w in workspaces]))
            .group_by(WorkspaceMember.workspace_id)
        ).all()
    )
    for workspace in workspaces:
        workspace.current_role = roles.get(workspace.id)
        workspace.members_count = counts.get(workspace.id, 0)


def update_workspace(workspace: Workspace, changes: dict) -> Workspace:
    for key, value in changes.items():
        setattr(workspace, key, value)
    db.session.commit()
    return workspace


def delete_workspace(user: User, workspace: Workspace) -> None:
    require_owner(user, workspace.id)
    workspace.deleted_at = utcnow()
    db.session.commit()


def members(workspace: Workspace) -> list[WorkspaceMember]:
    return list(
        db.session.execute(
            select(WorkspaceMember).where(WorkspaceMember.workspace_id == workspace.id).order_by(WorkspaceMember.id)
        ).scalars()
    )


def add_member(user: User, workspace: Workspace, email: str, role: str) -> WorkspaceMember:
    require_owner(user, workspace.id)
    invitee = db.session.execute(select(User).where(func.lower(User.email) == email.lower())).scalar_one_or_none()
    if invitee is None:  # well-formed, but names no user: the user is not found (as an unknown uuid is)
        raise NotFound("No user with this email.", errors={"email": ["No user with this email."]})
    exists = db.session.execute(
        select(WorkspaceMember).where(
            WorkspaceMember.workspace_id == workspace.id, WorkspaceMember.user_id == invitee.id
        )
    ).scalar_one_or_none()
    if exists is not None:
        raise Conflict("This user is already a member of the workspace.")
    member = WorkspaceMember(workspace_id=workspace.id, user_id=invitee.id, role=role, created_at=utcnow())
    db.session.add(member)
    db.session.commit()
    return member


def _member(workspace: Workspace, user_uuid: str) -> WorkspaceMember:
    member = db.session.execute(
        select(WorkspaceMember)
        .join(User, User.id == WorkspaceMember.user_id)
        .where(WorkspaceMember.workspace_id == workspace.id, User.uuid == user_uuid)
    ).scalar_one_or_none()
    if member is None:
        raise NotFound("Resource not found.")
    return member


def _ensure_other_owner(workspace: Workspace, member: WorkspaceMember) -> None:
    if member.role != "owner":
        return
    owners = db.session.execute(
        select(func.count()).where(WorkspaceMember.workspace_id == workspace.id, WorkspaceMember.role == "owner")
    ).scalar_one()
    if owners <= 1:
        raise Conflict("A workspace must keep at least one owner.")


def change_role(user: User, workspace: Workspace, user_uuid: str, role: str) -> WorkspaceMember:
    require_owner(user, workspace.id)
    member = _member(workspace, user_uuid)
    if role != "owner":
        _ensure_other_owner(workspace, member)
    member.role = role
    db.session.commit()
    return member


def remove_member(user: User, workspace: Workspace, user_uuid: str) -> None:
    require_owner(user, workspace.id)
    member = _member(workspace, user_uuid)
    _ensure_other_owner(workspace, member)
    db.session.delete(member)
    db.session.commit()
