"""Migration d4e6a8b0c2f5: stored metadata.execution_time values become whole milliseconds."""
from __future__ import annotations

from flask_migrate import downgrade, upgrade

from athena.extensions import db
from athena.models import WorkflowExecution, WorkflowExecutionData
from tests.factories import make_user, make_workflow, make_workspace


def _data_row(workflow, meta: dict) -> int:
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workflow.workspace_id, status="completed",
                                  is_finished=True)
    db.session.add(execution)
    db.session.flush()
    row = WorkflowExecutionData(workflow_execution_id=execution.id, workflow_data=[], meta=meta, data=None)
    db.session.add(row)
    db.session.commit()
    return row.id


def test_stored_execution_times_become_integers(app):
    owner = make_user()
    workflow = make_workflow(make_workspace(owner), owner)
    rows = {
        "fraction": _data_row(workflow, {"execution_time": 12.345, "processed_count": 2}),
        "half_up": _data_row(workflow, {"execution_time": 2.5}),
        "integral": _data_row(workflow, {"execution_time": 7}),
        "missing": _data_row(workflow, {"running_node": None}),
    }
    db.session.remove()
    downgrade(revision="c3d5f7a9b2e4")
    upgrade()
    db.session.expire_all()
    metas = {name: db.session.get(WorkflowExecutionData, row_id).meta for name, row_id in rows.items()}
    assert metas["fraction"] == {"execution_time": 12, "processed_count": 2}
    assert type(metas["fraction"]["execution_time"]) is int
    assert metas["half_up"]["execution_time"] == 3  # half away from zero, in SQLite and PostgreSQL alike
    assert metas["integral"] == {"execution_time": 7}
    assert metas["missing"] == {"running_node": None}
