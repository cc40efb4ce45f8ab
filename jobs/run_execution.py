"""The RQ jobs: run one execution, one resumption of it, or one continuation after a worker
died or handed it over; node by node, in-process."""
from __future__ import annotations

from typing import Any

from jobs.app_context import worker_app
from jobs.lifecycle import shutdown_requested


def _run(execution_id: int, resume: dict[str, Any] | None, continuing: bool) -> str:
    app = worker_app()
    with app.app_context():
        from athena.extensions import db
        from athena.services.execution_run import ExecutionRun

        try:
            return ExecutionRun(execution_id, resume, continuing=continuing,
                                should_handoff=shutdown_requested.is_set).run()
        finally:
            db.session.remove()


def run_execution(execution_id: int, resume: dict[str, Any] | None = None) -> str:
    return _run(execution_id, resume, continuing=False)


def continue_execution(execution_id: int) -> str:
    return _run(execution_id, None, continuing=True)
