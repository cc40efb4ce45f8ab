"""RQ jobs of the schedule trigger (see :mod:`athena.services.schedules`).

- :func:`run_tick` is the job RQ's scheduler enqueues at each tick (``Queue.enqueue_at``).
- :func:`run_reconcile` re-arms schedules missing their next tick; each worker process enqueues
  it every ``SCHEDULE_RECONCILE_SECONDS`` with RQ's cron (:class:`rq.cron.CronScheduler`), the
  same mechanism as the sweeper (:mod:`jobs.sweeper`). A Redis lock keeps it to one pass per
  interval however many workers run; a pass is idempotent anyway."""
from __future__ import annotations

import logging
import threading

from redis import Redis

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


def start_schedule_reconciler(connection: Redis, queue_name: str, interval: int) -> threading.Event:
    """Start this worker process's reconcile cron thread; set the returned event to stop it."""
    from rq.cron import CronScheduler

    cron = CronScheduler(connection=connection,
                         name=f"athena-schedules-{queue_name}-{threading.get_native_id()}")
    cron.register(run_reconcile, queue_name, interval=interval, job_timeout=max(60, interval * 4),
                  result_ttl=interval * 4, failure_ttl=24 * 3600)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                cron.enqueue_jobs()
            except Exception:  # noqa: BLE001 - Redis hiccup: try again next tick
                log.exception("schedules: could not enqueue the reconcile pass")
            stop.wait(max(1.0, min(float(interval), cron.calculate_sleep_interval())))

    threading.Thread(target=loop, name="athena-schedules", daemon=True).start()
    log.info("schedules: reconcile every %s s on queue %s", interval, queue_name)
    return stop
