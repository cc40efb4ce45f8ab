"""Container healthchecks: ``python -m athena.healthcheck web`` and ``... worker``.

docker-compose.yml runs these inside the ``web`` and ``worker`` containers (the slim image has no
curl); they are plain commands, so they run the same way on any machine (the tests run them,
tests/deploy/test_compose.py). Exit status 0 means healthy; 1 means not, with one line on
stderr saying why. They create no app and touch no database: settings come from config.py
(``PORT``, ``REDIS_URL``, ``ATHENA_QUEUE``), the environment the checked process has too.

``web``
    ``GET http://127.0.0.1:$PORT/api/v1/openapi.json`` answers 200 with the OpenAPI document
    within ``--timeout`` seconds: gunicorn listens and a worker process has loaded the app.

``worker``
    An RQ worker of this host (``socket.gethostname()``: in Docker, the container) is
    registered in Redis for the queue ``ATHENA_QUEUE`` and its process is alive. A worker
    refreshes its registration with heartbeats and deletes it when it stops, so a hung or
    disconnected worker drops out within RQ's worker TTL; the pid check catches one killed
    without clean-up at once.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.error
import urllib.request

import config

DEFAULT_TIMEOUT_SECONDS = 5.0


class Unhealthy(Exception):
    """Why the checked process is not healthy (printed on stderr, exit status 1)."""


def check_web(timeout: float = DEFAULT_TIMEOUT_SECONDS) -> str:
    cfg = config.config_for()
    url = f"http://127.0.0.1:{cfg.PORT}{cfg.OPENAPI_URL_PREFIX}/{cfg.OPENAPI_JSON_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"GET {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unhealthy(f"GET {url}: {reason}") from None
    if status != 200:
        raise Unhealthy(f"GET {url}: HTTP {status}")
    try:
        document = json.loads(body)
    except ValueError:
        raise Unhealthy(f"GET {url}: the answer is not JSON") from None
    if not isinstance(document, dict) or "openapi" not in document:
        raise Unhealthy(f"GET {url}: the answer is not an OpenAPI document")
    return f"web: {url} answers"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def check_worker(timeout: float = DEFAULT_TIMEOUT_SECONDS) -> str:
    cfg = config.config_for()
    if not cfg.REDIS_URL:
        raise Unhealthy("REDIS_URL is not set: no Redis to look for the worker in")
    from redis import Redis  # noqa: PLC0415 - only this check needs them
    from redis.exceptions import RedisError  # noqa: PLC0415
    from rq import Queue, Worker  # noqa: PLC0415

    host = socket.gethostname()
    try:
        with Redis.from_url(cfg.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout) as connection:
            workers = Worker.all(queue=Queue(cfg.QUEUE_NAME, connection=connection))
    except (RedisError, OSError) as exc:
        raise Unhealthy(f"Redis does not answer: {exc}") from None
    mine = [w for w in workers if w.hostname == host and w.pid]
    alive = [w for w in mine if _process_alive(int(w.pid))]
    if not alive:
        dead = f" ({len(mine)} registered here with no live process)" if mine else ""
        raise Unhealthy(f"no live RQ worker of host {host!r} is registered for queue {cfg.QUEUE_NAME!r}{dead}")
    return "worker: " + ", ".join(f"{w.name} (pid {w.pid}, {w.get_state()})" for w in alive)


CHECKS = {"web": check_web, "worker": check_worker}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m athena.healthcheck",
        description="Healthcheck of an Athena process (docker-compose.yml): exit 0 when healthy, 1 when not. "
                    "web: the API on 127.0.0.1:$PORT serves its OpenAPI document. worker: an RQ worker of this "
                    "host is registered in Redis for $ATHENA_QUEUE and its process is alive.")
    parser.add_argument("process", choices=sorted(CHECKS), help="what to check")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                        help=f"seconds per network call (default {DEFAULT_TIMEOUT_SECONDS:g})")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing when healthy")
    args = parser.parse_args(argv)
    try:
        summary = CHECKS[args.process](args.timeout)
    except Unhealthy as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"healthy: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
