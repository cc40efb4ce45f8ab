"""covering partial indexes for the execution list, its total and the count

The partial indexes of b2c4e6f8a1d3 gain the columns the read path needs, so that the list's
page is an index range in its sort order (created_at, id), and its total and the count endpoint
read the index alone: ``id`` (the tie-breaker of the sort), ``workflow_id`` (the filter leaving
out other members' private workflows) and ``deleted_at`` (SQLite answers from an index alone only
when it holds the columns of the partial index's WHERE too; always NULL in these indexes).

Revision ID: c3d5f7a9b2e4
Revises: b2c4e6f8a1d3
Create Date: 2026-11-23 21:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = "c3d5f7a9b2e4"
down_revision = "b2c4e6f8a1d3"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade():
    with op.batch_alter_table("workflow_executions") as batch_op:
        batch_op.drop_index("ix_executions_live_workflow_created")
        batch_op.drop_index("ix_executions_live_workspace_created")
        batch_op.create_index("ix_executions_live_workspace_list",
                              ["workspace_id", "created_at", "id", "workflow_id", "deleted_at"],
                              postgresql_where=LIVE, sqlite_where=LIVE)
        batch_op.create_index("ix_executions_live_workflow_list", ["workflow_id", "created_at", "id", "deleted_at"],
                              postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade():
    with op.batch_alter_table("workflow_executions") as batch_op:
        batch_op.drop_index("ix_executions_live_workflow_list")
        batch_op.drop_index("ix_executions_live_workspace_list")
        batch_op.create_index("ix_executions_live_workspace_created", ["workspace_id", "created_at"],
                              postgresql_where=LIVE, sqlite_where=LIVE)
        batch_op.create_index("ix_executions_live_workflow_created", ["workflow_id", "created_at"],
                              postgresql_where=LIVE, sqlite_where=LIVE)
