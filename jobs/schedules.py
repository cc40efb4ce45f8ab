"""RQ jobs of the schedule trigger (see :mod:`athena.services.schedules`).

- :func:`run_tick` is the job RQ's scheduler enqueues at each tick (``Queue.enqueue_at``).
- :func:`run_reconcile` re-arms schedules missing their next tick; each worker process enqueues
  it every ``SCHEDULE_RECONCILE_SECONDS`` with RQ's cron (:class:`rq.cron.CronScheduler`), the
  same mechanism as the sweeper (:mod:`jobs.sweeper`). A Redis lock keeps it to one pass per
  interval however many workers run; a pass is idempotent anyway."""
from __future__ import annotations

import logging


from jobs.app_context import worker_app

RECONCILE_LOCK = "athena:sched:reconcile-lock"

log = logging.getLogger(__name__)


def run_tick(workflow_id: int, tick_epoch: int) -> str:
    """The tick job: at most one ``schedule`` execution for this tick; arms the next tick."""
    app = worker_app()
    with app.app_context():
        from athena.extensions import db
        from athena.services.schedules import fire_tick

        try:
            return fire_tick(int(workflow_id), int(tick_epoch))
        finally:
            db.session.remove()


def run_reconcile(force: bool = False) -> dict[str, int] | None:
    """The reconcile job (skipped when another worker ran one within the interval)."""
    app = worker_app()
    with app.app_context():
        from athena.extensions import db
        from athena.redis_client import get_redis
        from athena.services.schedules import reconcile

        interval = int(app.config["SCHEDULE_RECONCILE_SECONDS"])
        if not force and not get_redis().set(RECONCILE_LOCK, "1", nx=True, ex=max(1, interval - 1)):
            return None
        try:
            result = reconcile()
        finally:
            db.session.remove()
    if result["armed"] or result["caught_up"]:
        log.info("schedules reconcile: %s", result)
    return result
