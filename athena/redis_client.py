"""The app's Redis connection and RQ queue, created per app (never at import time)."""
from __future__ import annotations

from flask import Flask, current_app
from redis import Redis
from rq import Queue


class RedisNotConfigured(RuntimeError):
    pass


def init_redis(app: Flask) -> None:
    url = app.config.get("REDIS_URL")
    state: dict = {"url": url, "redis": None, "queue": None}
    if url:
        state["redis"] = Redis.from_url(url, health_check_interval=30)
        state["queue"] = Queue(app.config["QUEUE_NAME"], connection=state["redis"])
    app.extensions["athena_redis"] = state


def get_redis(app: Flask | None = None) -> Redis:
    state = (app or current_app).extensions["athena_redis"]
    if state["redis"] is None:
        raise RedisNotConfigured(
            "REDIS_URL is not set: start Athena with `make run` (embedded Redis) or set REDIS_URL"
        )
    return state["redis"]


def get_queue(app: Flask | None = None) -> Queue:
    get_redis(app)
    return (app or current_app).extensions["athena_redis"]["queue"]
