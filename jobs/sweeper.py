"""The sweeper: resumes what the normal paths missed, every ~30 s.

- suspended executions whose ``wait_till`` passed more than ``GRACE_SECONDS`` ago (their
  scheduled RQ job was lost, e.g. Redis was flushed, or no scheduler was running);
- parents still waiting on a child that finished (the notification was lost);
- pending approvals of executions that ended (stopped while paused) become ``cancelled``;
- running executions whose worker died (lease expired) continue on another worker, and pending
  ones whose RQ job vanished are enqueued again (:mod:`athena.services.recovery`).

Resumption is idempotent (see :mod:`athena.services.resume`), so a sweep that races the
scheduler, another sweep or a human decision is harmless: exactly one resumption wins.

Scheduling: :mod:`jobs.periodic` (RQ's own cron) enqueues :func:`run_sweep` every
``SWEEPER_INTERVAL_SECONDS`` on the worker's queue."""
from __future__ import annotations

import logging

from jobs.app_context import worker_app

GRACE_SECONDS = 5.0

log = logging.getLogger(__name__)


def sweep(grace_seconds: float = GRACE_SECONDS) -> dict[str, int]:
    """One sweep (needs an app context). Returns what it did, for logs and tests."""
    from athena.extensions import db
    from athena.services.approvals import close_orphans
    from athena.services.recovery import recover_orphans, requeue_lost_pending
    from athena.services.resume import resume_orphaned_parents, resume_overdue

    try:
        recovered = recover_orphans(grace_seconds)
        return {
            "timers": resume_overdue(grace_seconds),
            "children": resume_orphaned_parents(),
            "approvals_cancelled": close_orphans(),
            "continued": recovered["continued"],
            "failed_after_crashes": recovered["failed"],
            "requeued": requeue_lost_pending(grace_seconds),
        }
    finally:
        db.session.rollback()


def run_sweep() -> dict[str, int]:
    """The RQ job."""
    app = worker_app()
    with app.app_context():
        from athena.extensions import db

        try:
            result = sweep(float(app.config["SWEEPER_GRACE_SECONDS"]))
        finally:
            db.session.remove()
    if any(result.values()):
        log.info("sweep: %s", result)
    return result
