"""metadata.execution_time as an integer number of milliseconds

The documented WorkflowExecutionData ``metadata.execution_time`` is an integer; runs stored it as
milliseconds with three decimals. Stored values are rounded to whole milliseconds in place (one
UPDATE; rows whose value is already an integer, or missing, are left alone).

Revision ID: d4e6a8b0c2f5
Revises: c3d5f7a9b2e4
Create Date: 2026-12-04 15:40:00
"""
from alembic import op

revision = "d4e6a8b0c2f5"
down_revision = "c3d5f7a9b2e4"
branch_labels = None
depends_on = None

POSTGRESQL = """
UPDATE workflow_execution_data
SET metadata = jsonb_set(metadata, '{execution_time}',
                         to_jsonb(round((metadata->>'execution_time')::numeric)::bigint))
WHERE jsonb_typeof(metadata->'execution_time') = 'number'
  AND (metadata->>'execution_time')::numeric <> round((metadata->>'execution_time')::numeric)
"""
SQLITE = """
UPDATE workflow_execution_data
SET metadata = json_set(metadata, '$.execution_time',
                        CAST(round(json_extract(metadata, '$.execution_time')) AS INTEGER))
WHERE json_type(metadata, '$.execution_time') = 'real'
"""


def upgrade():
    op.execute(POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE)


def downgrade():
    pass  # whole milliseconds are valid values for the older code too
