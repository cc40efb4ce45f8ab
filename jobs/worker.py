"""Worker entry point: ``python -m jobs.worker``.

An RQ ``SimpleWorker`` (no fork per job: a node costs ~1 ms, a fork ~10 ms) with RQ's
scheduler, on the queue named in config, with the app context pushed once."""
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
        worker.work(with_scheduler=True, logging_level="INFO")


if __name__ == "__main__":
    main()
