"""Worker entry point: ``python -m jobs.worker``.

An RQ ``SimpleWorker`` (no fork per job: a node costs ~1 ms, a fork ~10 ms) with RQ's
scheduler, on the queue named in config, with the app context pushed once, plus the periodic
sweeper and schedule reconcile (:mod:`jobs.periodic`).

Warm shutdown (SIGTERM): RQ lets the current job finish; Athena's job notices the request at
the next node boundary, checkpoints and hands the execution over to another worker, so a
long workflow does not hold a shutdown and no node runs twice."""
from __future__ import annotations

import logging

from rq import Queue, SimpleWorker

from jobs.app_context import worker_app
from jobs.lifecycle import shutdown_requested


class AthenaWorker(SimpleWorker):
    def handle_warm_shutdown_request(self) -> None:
        shutdown_requested.set()
        super().handle_warm_shutdown_request()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up lines, on import: not ours
    app = worker_app()
    from athena.redis_client import get_redis
    from jobs.periodic import start_periodic
    from jobs.schedules import run_reconcile
    from jobs.sweeper import run_sweep

    with app.app_context():
        connection = get_redis(app)
        queue = Queue(app.config["QUEUE_NAME"], connection=connection)
        worker = AthenaWorker([queue], connection=connection)
        start_periodic(connection, queue.name, [
            (run_sweep, int(app.config["SWEEPER_INTERVAL_SECONDS"])),
            (run_reconcile, int(app.config["SCHEDULE_RECONCILE_SECONDS"])),
        ])
        worker.work(with_scheduler=True, logging_level="INFO")


if __name__ == "__main__":
    main()
