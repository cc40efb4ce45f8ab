from __future__ import annotations

from athena.extensions import db
from athena.models.base import IdMixin, SoftDeleteMixin, TimestampMixin

ROLES = ("owner", "editor", "viewer")
WRITE_ROLES = ("owner", "editor")


class Workspace(IdMixin, TimestampMixin, SoftDeleteMixin, db.Model):
    __tablename__ = "workspaces"
    organization_id = db.Column(db.Integer, db.ForeignKey("organizations.id"), nullable=True, index=True)
    name = db.Column(db.String(255), nullable=False)
    description = db.Column(db.Text, nullable=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=False)

    organization = db.relationship("Organization", lazy="joined")


class WorkspaceMember(db.Model):
    __tablename__ = "workspace_members"
    __table_args__ = (db.UniqueConstraint("workspace_id", "user_id", name="uq_workspace_members_workspace_user"),)
    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    role = db.Column(db.String(16), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False)

    user = db.relationship("User", lazy="joined")
