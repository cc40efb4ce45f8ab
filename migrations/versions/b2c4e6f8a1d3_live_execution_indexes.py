"""partial indexes for the execution list and count (live rows by workspace/workflow and time)

Revision ID: b2c4e6f8a1d3
Revises: 80bfe3fd70d1
Create Date: 2026-11-23 19:30:00
"""
from alembic import op
import sqlalchemy as sa

revision = "b2c4e6f8a1d3"
down_revision = "80bfe3fd70d1"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade():
    with op.batch_alter_table("workflow_executions") as batch_op:
        batch_op.create_index("ix_executions_live_workspace_created", ["workspace_id", "created_at"],
                              postgresql_where=LIVE, sqlite_where=LIVE)
        batch_op.create_index("ix_executions_live_workflow_created", ["workflow_id", "created_at"],
                              postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade():
    with op.batch_alter_table("workflow_executions") as batch_op:
        batch_op.drop_index("ix_executions_live_workflow_created")
        batch_op.drop_index("ix_executions_live_workspace_created")
