"""Worker entry point: ``python -m jobs.worker``.

An RQ ``SimpleWorker`` (no fork per job: a node costs ~1 ms, a fork ~10 ms) with RQ's
scheduler, on the queue named in config, with the app context pushed once, and the sweeper's
cron thread (jobs/sweeper.py) enqueuing a sweep every ~30 s."""
from __future__ import annotations

import logging

from rq import Queue, SimpleWorker

from jobs.app_context import worker_app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = worker_app()
    from athena.redis_client import get_redis

    with app.app_context():
        connection = get_redis(app)
        queue = Queue(app.config["QUEUE_NAME"], connection=connection)
        worker = SimpleWorker([queue], connection=connection)
        from jobs.sweeper import SWEEP_INTERVAL_SECONDS, start_sweeper

        start_sweeper(connection, queue.name, int(app.config.get("SWEEPER_INTERVAL_SECONDS", SWEEP_INTERVAL_SECONDS)))
        from jobs.schedules import start_schedule_reconciler

        start_schedule_reconciler(connection, queue.name, int(app.config["SCHEDULE_RECONCILE_SECONDS"]))
        worker.work(with_scheduler=True, logging_level="INFO")


if __name__ == "__main__":
    main()
