"""The sweeper: resumes what the normal paths missed, every ~30 s.

- suspended executions whose ``wait_till`` passed more than ``GRACE_SECONDS`` ago (their
  scheduled RQ job was lost, e.g. Redis was flushed, or no scheduler was running);
- parents still waiting on a child that finished (the notification was lost);
- pending approvals of executions that ended (stopped while paused) become ``cancelled``.

Resumption is idempotent (see :mod:`athena.services.resume`), so a sweep that races the
scheduler, another sweep or a human decision is harmless: exactly one resumption wins.

Scheduling uses RQ's own cron (:class:`rq.cron.CronScheduler`, registered with ``interval``):
each worker process runs a small thread that enqueues :func:`run_sweep` on the worker's queue
when due. The cron's enqueue is a plain RQ job, so a flushed Redis only loses one tick."""
from __future__ import annotations

import logging
import threading
from redis import Redis

from jobs.app_context import worker_app

SWEEP_INTERVAL_SECONDS = 30
GRACE_SECONDS = 5.0

log = logging.getLogger(__name__)


def sweep(grace_seconds: float = GRACE_SECONDS) -> dict[str, int]:
    """One sweep (needs an app context). Returns what it did, for logs and tests."""
    from athena.extensions import db
    from athena.services.approvals import close_orphans
    from athena.services.resume import resume_orphaned_parents, resume_overdue

    try:
        return {
            "timers": resume_overdue(grace_seconds),
            "children": resume_orphaned_parents(),
            "approvals_cancelled": close_orphans(),
        }
    finally:
        db.session.rollback()


def run_sweep() -> dict[str, int]:
    """The RQ job."""
    app = worker_app()
    with app.app_context():
        from athena.extensions import db

        try:
            result = sweep(float(app.config.get("SWEEPER_GRACE_SECONDS", GRACE_SECONDS)))
        finally:
            db.session.remove()
    if any(result.values()):
        log.info("sweep: %s", result)
    return result


def start_sweeper(connection: Redis, queue_name: str, interval: int = SWEEP_INTERVAL_SECONDS) -> threading.Event:
    """Start the cron thread of this worker process; set the returned event to stop it."""
    from rq.cron import CronScheduler

    stop = threading.Event()
    if interval <= 0:  # disabled (SWEEPER_INTERVAL_SECONDS=0)
        stop.set()
        return stop
    cron = CronScheduler(connection=connection, name=f"athena-sweeper-{queue_name}-{threading.get_native_id()}")
    cron.register(run_sweep, queue_name, interval=interval, job_timeout=max(60, interval * 4),
                  result_ttl=interval * 4, failure_ttl=24 * 3600)

    def loop() -> None:
        while not stop.is_set():
            try:
                cron.enqueue_jobs()
            except Exception:  # noqa: BLE001 - Redis hiccup: try again next tick
                log.exception("sweeper: could not enqueue the sweep")
            stop.wait(max(1.0, min(float(interval), cron.calculate_sleep_interval())))

    threading.Thread(target=loop, name="athena-sweeper", daemon=True).start()
    log.info("sweeper: every %s s on queue %s", interval, queue_name)
    return stop

