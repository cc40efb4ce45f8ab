"""Periodic jobs of every worker process, with RQ's own cron (:class:`rq.cron.CronScheduler`).

``CronScheduler.start()`` installs signal handlers, so it cannot run beside the worker in the
same process; a daemon thread calls its ``enqueue_jobs()`` instead. Each due job is a plain RQ
job on the worker's queue. With several workers a job may be enqueued once per worker per
interval: the periodic jobs are idempotent (and the schedule reconcile takes a Redis lock).

An idle worker's log stays quiet: RQ's own INFO lines about these jobs (enqueued, started,
"Job OK", result kept) and its registry upkeep every 10 minutes are logged at DEBUG
(:class:`QuietPeriodicJobs`); the jobs log at INFO themselves when they did something (a
recovered execution, a re-armed schedule), and a failure is still logged by RQ as an error."""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
QUIET_LOGGERS = ("rq.worker", "rq.cron")
RQ_UPKEEP = ("Worker %s: cleaning registries for queue: %s", "Worker %s: cleaning group registries")


class QuietPeriodicJobs(logging.Filter):
    """Demotes RQ's INFO records about the given periodic functions (and RQ's registry upkeep)
    to DEBUG: they are dropped unless the logger is enabled for DEBUG. Warnings and errors (a
    periodic job that failed) pass unchanged, and so does every line about other jobs."""

    def __init__(self, functions: list[Callable]) -> None:
        super().__init__()
        self.paths = tuple(f"{func.__module__}.{func.__qualname__}" for func in functions)
        self.enqueued = tuple(f"Enqueued job {func.__name__} to queue " for func in functions)
        self.job_ids: deque[str] = deque(maxlen=64)  # jobs of these functions, seen by their description

    def _about_periodic(self, record: logging.LogRecord) -> bool:
        if record.msg in RQ_UPKEEP:
            return True
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith(self.enqueued) or any(f"'{path}'" in message for path in self.paths):
            return True  # rq.cron: "Enqueued job run_sweep to queue ...", "Registered 'jobs.sweeper.run_sweep' ..."
        args: tuple[Any, ...] = record.args if isinstance(record.args, tuple) else ()
        texts = [arg for arg in args if isinstance(arg, str)]
        if any(path in text for text in texts for path in self.paths):
            # "Worker w: queue: jobs.sweeper.run_sweep() (<job id>)": remember the id for "Job OK (<id>)"
            if texts and "%s (%s)" in message and texts[-1] not in self.job_ids:
                self.job_ids.append(texts[-1])
            return True
        return any(text in self.job_ids for text in texts)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self._about_periodic(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_periodic_logs(functions: list[Callable]) -> QuietPeriodicJobs:
    """Install :class:`QuietPeriodicJobs` on RQ's worker and cron loggers (returned, so that it
    can be removed)."""
    quiet = QuietPeriodicJobs(functions)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    return quiet


def start_periodic(connection: Redis, queue_name: str, jobs: list[tuple[Callable, int]]) -> threading.Event:
    """Register ``(function, interval_seconds)`` pairs; set the returned event to stop the thread."""
    from rq.cron import CronScheduler

    stop = threading.Event()
    jobs = [(func, interval) for func, interval in jobs if interval > 0]  # 0 disables a job
    if not jobs:
        return stop
    quiet_periodic_logs([func for func, _ in jobs])
    cron = CronScheduler(connection=connection, name=f"athena-periodic-{queue_name}-{threading.get_native_id()}")
    for func, interval in jobs:
        cron.register(func, queue_name, interval=interval, job_timeout=max(60, interval * 4),
                      result_ttl=interval * 4, failure_ttl=24 * 3600)
    shortest = min(interval for _, interval in jobs)

    def loop() -> None:
        failing = False  # Redis away: one line when it goes, one when it is back
        while not stop.is_set():
            try:
                cron.enqueue_jobs()
            except RedisError as exc:  # Redis hiccup or outage: try again next tick
                if not failing:
                    log.warning("periodic: could not enqueue due jobs (%s: %s); retrying every tick",
                                type(exc).__name__, exc)
                failing = True
            except Exception:  # noqa: BLE001 - logged, and tried again next tick
                log.exception("periodic: could not enqueue due jobs")
            else:
                if failing:
                    log.info("periodic: enqueuing due jobs again")
                failing = False
            stop.wait(max(1.0, min(float(shortest), cron.calculate_sleep_interval())))

    threading.Thread(target=loop, name="athena-periodic", daemon=True).start()
    log.info("periodic: %s", ", ".join(f"{func.__name__} every {interval} s" for func, interval in jobs))
    return stop
