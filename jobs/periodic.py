"""Periodic jobs of every worker process, with RQ's own cron (:class:`rq.cron.CronScheduler`).

``CronScheduler.start()`` installs signal handlers, so it cannot run beside the worker in the
same process; a daemon thread calls its ``enqueue_jobs()`` instead. Each due job is a plain RQ
job on the worker's queue. With several workers a job may be enqueued once per worker per
interval: the periodic jobs are idempotent (and the schedule reconcile takes a Redis lock)."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from redis import Redis

log = logging.getLogger(__name__)


def start_periodic(connection: Redis, queue_name: str, jobs: list[tuple[Callable, int]]) -> threading.Event:
    """Register ``(function, interval_seconds)`` pairs; set the returned event to stop the thread."""
    from rq.cron import CronScheduler

    stop = threading.Event()
    jobs = [(func, interval) for func, interval in jobs if interval > 0]  # 0 disables a job
    if not jobs:
        return stop
    cron = CronScheduler(connection=connection, name=f"athena-periodic-{queue_name}-{threading.get_native_id()}")
    for func, interval in jobs:
        cron.register(func, queue_name, interval=interval, job_timeout=max(60, interval * 4),
                      result_ttl=interval * 4, failure_ttl=24 * 3600)
    shortest = min(interval for _, interval in jobs)

    def loop() -> None:
        while not stop.is_set():
            try:
                cron.enqueue_jobs()
            except Exception:  # noqa: BLE001 - Redis hiccup: try again next tick
                log.exception("periodic: could not enqueue due jobs")
            stop.wait(max(1.0, min(float(shortest), cron.calculate_sleep_interval())))

    threading.Thread(target=loop, name="athena-periodic", daemon=True).start()
    log.info("periodic: %s", ", ".join(f"{func.__name__} every {interval} s" for func, interval in jobs))
    return stop
