from __future__ import annotations

from athena.extensions import db
from athena.models.base import IdMixin, JSONType, SoftDeleteMixin, TimestampMixin, new_uuid
from athena.timeutil import utcnow

STATUSES = ("pending", "running", "waiting", "paused", "completed", "failed", "cancelled")
TERMINAL_STATUSES = ("completed", "failed", "cancelled")
# The workflow counters (executions_<bucket>_count): a partition of STATUSES, so that
# executions_count = in progress + for review + completed + failed + cancelled. "For review" is
# an execution paused for a human (an approval); it is not also "in progress".
COUNTER_BUCKETS: dict[str, tuple[str, ...]] = {
    "in_progress": ("pending", "running", "waiting"),
    "for_review": ("paused",),
    "completed": ("completed",),
    "failed": ("failed",),
    "cancelled": ("cancelled",),
}
IN_PROGRESS_STATUSES = COUNTER_BUCKETS["in_progress"]
MODES = ("manual", "webhook", "schedule", "retry", "child", "api")


class WorkflowExecution(IdMixin, TimestampMixin, SoftDeleteMixin, db.Model):
    __tablename__ = "workflow_executions"
    __table_args__ = (
        db.Index("ix_executions_workspace_created", "workspace_id", "created_at"),
        db.Index("ix_executions_workflow_status", "workflow_id", "status"),
        db.Index("ix_executions_status_wait_till", "status", "wait_till"),
        # The documented list and count (services/execution_queries.py): live executions of a
        # workspace/workflow in (created_at, id) order, the list's sort, so a page is an index range
        # and its total and the count read the index alone. workflow_id: the filter that leaves
        # out other members' private workflows. deleted_at (always NULL here): SQLite only counts
        # from an index alone when it holds the columns of the partial index's WHERE too.
        db.Index("ix_executions_live_workspace_list", "workspace_id", "created_at", "id", "workflow_id",
                 "deleted_at", postgresql_where=db.text("deleted_at IS NULL"),
                 sqlite_where=db.text("deleted_at IS NULL")),
        db.Index("ix_executions_live_workflow_list", "workflow_id", "created_at", "id", "deleted_at",
                 postgresql_where=db.text("deleted_at IS NULL"), sqlite_where=db.text("deleted_at IS NULL")),
    )
    workflow_id = db.Column(db.Integer, db.ForeignKey("workflows.id"), nullable=False)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id"), nullable=False)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True, index=True)
    status = db.Column(db.String(16), nullable=False, default="pending")
    mode = db.Column(db.String(16), nullable=False, default="manual")
    is_finished = db.Column(db.Boolean, nullable=False, default=False)
    retry_of = db.Column(db.String(36), nullable=True, index=True)
    retry_success_id = db.Column(db.String(36), nullable=True)
    parent_execution_id = db.Column(db.Integer, db.ForeignKey("workflow_executions.id"), nullable=True, index=True)
    parent_node_id = db.Column(db.String(255), nullable=True)
    input = db.Column(JSONType, nullable=True)
    output = db.Column(JSONType, nullable=True)
    error = db.Column(db.Text, nullable=True)
    requires_human_review = db.Column(db.Boolean, nullable=False, default=False)
    has_command_room_task = db.Column(db.Boolean, nullable=False, default=False)
    crash_count = db.Column(db.Integer, nullable=False, default=0)
    started_at = db.Column(db.DateTime, nullable=True)
    stopped_at = db.Column(db.DateTime, nullable=True)
    wait_till = db.Column(db.DateTime, nullable=True)

    workflow = db.relationship("Workflow", lazy="select")
    parent = db.relationship("WorkflowExecution", remote_side="WorkflowExecution.id", lazy="select", viewonly=True)
    execution_data = db.relationship(
        "WorkflowExecutionData", lazy="select", uselist=False, back_populates="execution"
    )


class WorkflowExecutionData(IdMixin, TimestampMixin, SoftDeleteMixin, db.Model):
    __tablename__ = "workflow_execution_data"
    workflow_execution_id = db.Column(
        db.Integer, db.ForeignKey("workflow_executions.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    workflow_data = db.Column(JSONType, nullable=False, default=list)
    # ``metadata`` is reserved on declarative models: the attribute is ``meta``.
    meta = db.Column("metadata", JSONType, nullable=False, default=dict)
    data = db.Column(JSONType, nullable=True)

    execution = db.relationship("WorkflowExecution", back_populates="execution_data")


class WorkflowApproval(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "workflow_approvals"
    __table_args__ = (db.Index("ix_approvals_execution_status", "workflow_execution_id", "status"),)
    workflow_execution_id = db.Column(
        db.Integer, db.ForeignKey("workflow_executions.id", ondelete="CASCADE"), nullable=False
    )
    node_id = db.Column(db.String(255), nullable=False)
    status = db.Column(db.String(16), nullable=False, default="pending")  # pending|approved|rejected
    message = db.Column(db.Text, nullable=True)
    decided_by = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    comment = db.Column(db.Text, nullable=True)
    decided_at = db.Column(db.DateTime, nullable=True)
    timeout_at = db.Column(db.DateTime, nullable=True)
    default_decision = db.Column(db.String(16), nullable=True)


__all__ = ["WorkflowExecution", "WorkflowExecutionData", "WorkflowApproval", "new_uuid", "utcnow"]
