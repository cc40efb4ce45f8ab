"""Worker entry point: ``python -m jobs.worker``.

An RQ ``SimpleWorker`` (no fork per job: a node costs ~1 ms, a fork ~10 ms) with RQ's
scheduler, on the queue named in config, with the app context pushed once, plus the periodic
sweeper and schedule reconcile (:mod:`jobs.periodic`).

Warm shutdown (SIGTERM): RQ lets the current job finish; Athena's job notices the request at
the next node boundary, checkpoints and hands the execution over to another worker, so a
long workflow does not hold a shutdown and no node runs twice.

Redis outages: the process outlives them. RQ retries by itself while the worker waits for a
job; a job that loses Redis (the execution stays ``running`` at its checkpoint; the sweeper
continues it once its lease is seen expired) and anything else that makes RQ's work loop quit
on a connection error lead to :func:`wait_for_redis`: a ping every 0.5 s, doubling up to
``RECONNECT_MAX_SECONDS``, one log line when Redis is lost and one when it is back (and one a
minute in between). Then the worker goes on (or, when RQ's loop had quit, a new one starts).
A SIGTERM meanwhile ends the process at once with status 0: no job is running."""
from __future__ import annotations

import logging
import signal
import time
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job

from jobs.app_context import worker_app
from jobs.lifecycle import shutdown_requested

RECONNECT_MIN_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0  # also caps RQ's own backoff while it waits for a job
HEARTBEAT_MIN_SECONDS = 1.0  # RQ's worker keys live 480 s and more: one heartbeat a second is plenty
QUIET_SECONDS = 60.0  # while Redis stays away: one "still waiting" line per this long
REDIS_LOST = (RedisConnectionError, RedisTimeoutError)

log = logging.getLogger("jobs.worker")  # also when run as __main__


def wait_for_redis(connection: Redis, why: str) -> bool:
    """Block until Redis answers (True) or a shutdown is requested (False)."""
    delay, started, reported = RECONNECT_MIN_SECONDS, time.monotonic(), 0.0
    log.warning("worker: lost Redis (%s); reconnecting", why)
    while not shutdown_requested.is_set():
        try:
            connection.ping()
        except REDIS_LOST as exc:
            waited = time.monotonic() - started
            if waited - reported >= QUIET_SECONDS:
                reported = waited
                log.warning("worker: Redis still unreachable after %.0f s (%s)", waited, exc)
        except Exception:  # noqa: BLE001 - a signal handler of RQ's that raised (see AthenaWorker)
            pass
        else:
            log.info("worker: Redis is back after %.1f s", time.monotonic() - started)
            return True
        _sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_SECONDS)
    return False


def _sleep(seconds: float) -> None:
    """Sleep, returning early on a shutdown request."""
    deadline = time.monotonic() + seconds
    while not shutdown_requested.is_set() and time.monotonic() < deadline:
        try:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        except Exception:  # noqa: BLE001 - RQ's SIGTERM handler raises when it cannot reach Redis
            pass


class AthenaWorker(SimpleWorker):
    max_connection_wait_time = RECONNECT_MAX_SECONDS
    last_direct_heartbeat = float("-inf")

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat (three commands that extend the worker's keys, 480 s and more) is sent
        three times per job when called on its own: once per ``HEARTBEAT_MIN_SECONDS`` is as
        safe, in one round trip. Heartbeats with a timeout of their own, and those inside RQ's
        pipelines, are left as they are."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        if timeout is None and time.monotonic() - self.last_direct_heartbeat < HEARTBEAT_MIN_SECONDS:
            return
        batch = self.connection.pipeline(transaction=False)
        super().heartbeat(timeout, pipeline=batch)
        batch.execute()
        self.last_direct_heartbeat = time.monotonic()

    def handle_warm_shutdown_request(self) -> None:
        shutdown_requested.set()
        super().handle_warm_shutdown_request()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """A job that lost Redis does not end the worker: it waits for Redis and goes on. The
        job's own bookkeeping in RQ is left to RQ's registry cleanup; the execution it ran is
        continued by the sweeper (its lease expires), a pending one is queued again."""
        try:
            super().execute_job(job, queue)
        except REDIS_LOST as exc:
            self.executions.clear()  # this worker runs one job at a time: it is over
            if not wait_for_redis(self.connection, f"job {job.id}: {type(exc).__name__}: {exc}"):
                raise StopRequested() from None


class QuietReconnects(logging.Filter):
    """RQ logs "could not connect to Redis instance ... retrying" at every retry of its dequeue
    loop and every 2 s from its pubsub thread: one such line per ``QUIET_SECONDS`` passes."""

    PREFIX = "Worker %s: could not connect to Redis instance"

    def __init__(self) -> None:
        super().__init__()
        self.last = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(self.PREFIX)):
            return True
        now = time.monotonic()
        if now - self.last < QUIET_SECONDS:
            return False
        self.last = now
        return True


def _on_stop_signal(signum: int, frame: Any) -> None:
    """SIGTERM/SIGINT outside RQ's work loop (waiting for Redis): stop at once."""
    shutdown_requested.set()


def _dispose(worker: AthenaWorker) -> None:
    """Best effort, once Redis answers: the end of RQ's teardown of a work loop that quit on a
    lost Redis (its first step, stopping the scheduler process, needs no Redis and was done)."""
    try:
        worker.register_death()
    except Exception:  # noqa: BLE001 - Redis went away again: the worker's key expires by itself
        pass
    try:
        worker.unsubscribe()
    except Exception:  # noqa: BLE001
        if worker.pubsub_thread is not None:
            worker.pubsub_thread.stop()


def run(connection: Redis, queue_name: str) -> None:
    """RQ's work loop, started again (as a new RQ worker) after it quits on a lost Redis, until
    a shutdown request. RQ's loop also quits on an error it does not handle, logged by RQ as
    "found an unhandled exception, quitting": it is started again too (as a supervisor would)."""
    half_done: AthenaWorker | None = None  # its teardown failed for want of Redis
    why = "not reachable at start"
    while not shutdown_requested.is_set():
        try:
            connection.ping()
        except REDIS_LOST:
            if not wait_for_redis(connection, why):
                break
        if half_done is not None:
            _dispose(half_done)
            half_done = None
        worker = AthenaWorker([Queue(queue_name, connection=connection)], connection=connection)
        try:
            worker.work(with_scheduler=True, logging_level="INFO")
            why = "RQ's work loop quit"
        except StopRequested:
            why = "stop requested"
        except REDIS_LOST as exc:
            half_done, why = worker, f"{type(exc).__name__}: {exc}"
        finally:
            # RQ's handlers belong to that worker: from here a stop signal just ends the process.
            signal.signal(signal.SIGTERM, _on_stop_signal)
            signal.signal(signal.SIGINT, _on_stop_signal)
        if not shutdown_requested.is_set():
            log.warning("worker: RQ's work loop ended (%s); starting it again", why)
            _sleep(RECONNECT_MIN_SECONDS)  # a loop that quits at once is not restarted in a hurry


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up lines, on import: not ours
    app = worker_app()
    from athena.redis_client import get_redis
    from jobs.periodic import start_periodic
    from jobs.schedules import run_reconcile
    from jobs.sweeper import run_sweep

    logging.getLogger("rq.worker").addFilter(QuietReconnects())
    with app.app_context():
        connection = get_redis(app)
        queue_name = app.config["QUEUE_NAME"]
        signal.signal(signal.SIGTERM, _on_stop_signal)  # until RQ installs its own
        signal.signal(signal.SIGINT, _on_stop_signal)
        start_periodic(connection, queue_name, [
            (run_sweep, int(app.config["SWEEPER_INTERVAL_SECONDS"])),
            (run_reconcile, int(app.config["SCHEDULE_RECONCILE_SECONDS"])),
        ])
        run(connection, queue_name)


if __name__ == "__main__":
    main()
