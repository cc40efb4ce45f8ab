from __future__ import annotations

from athena.extensions import db
from athena.models.base import IdMixin, JSONType, SoftDeleteMixin, TimestampMixin

VISIBILITIES = ("private", "workspace", "public")


class Workflow(IdMixin, TimestampMixin, SoftDeleteMixin, db.Model):
    __tablename__ = "workflows"
    __table_args__ = (db.Index("ix_workflows_workspace_created", "workspace_id", "created_at"),)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=False, index=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id"), nullable=False, index=True)
    template_id = db.Column(db.Integer, nullable=True)
    name = db.Column(db.String(255), nullable=False)
    description = db.Column(db.Text, nullable=True)
    profile_photo_url = db.Column(db.String(2048), nullable=True)
    profile_photo_config = db.Column(JSONType, nullable=True)
    visibility = db.Column(db.String(16), nullable=False, default="workspace")
    is_active = db.Column(db.Boolean, nullable=False, default=True)
    trigger_count = db.Column(db.Integer, nullable=False, default=0)
    allow_cloning = db.Column(db.Boolean, nullable=False, default=True)
    allow_account_usage = db.Column(db.Boolean, nullable=False, default=False)
    last_used_at = db.Column(db.DateTime, nullable=True)
    nodes = db.Column(JSONType, nullable=False, default=list)
    edges = db.Column(JSONType, nullable=False, default=list)
    variables = db.Column(JSONType, nullable=False, default=dict)
    webhook_secret = db.Column(db.String(255), nullable=True)

    workspace = db.relationship("Workspace", lazy="joined")


class WorkflowFavorite(db.Model):
    __tablename__ = "workflow_favorites"
    __table_args__ = (db.UniqueConstraint("workflow_id", "user_id", name="uq_workflow_favorites_workflow_user"),)
    id = db.Column(db.Integer, primary_key=True)
    workflow_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False, index=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at = db.Column(db.DateTime, nullable=False)
