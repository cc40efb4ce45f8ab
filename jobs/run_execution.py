"""The RQ job: run one execution, or one resumption of it, node by node in-process."""
from __future__ import annotations

from typing import Any

from jobs.app_context import worker_app


def run_execution(execution_id: int, resume: dict[str, Any] | None = None) -> str:
    app = worker_app()
    with app.app_context():
        from athena.extensions import db
        from athena.services.execution_run import ExecutionRun

        try:
            return ExecutionRun(execution_id, resume).run()
        finally:
            db.session.remove()
