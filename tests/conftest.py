"""Fixtures: a real database (SQLite file or PostgreSQL), a real Redis (server or embedded),
the real app, a real RQ worker process and a real HTTP/WebSocket server."""
from __future__ import annotations

pytest_plugins = ["tests.support.fake_openai"]

import os
import time
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

import config
from athena import create_app
from athena.dev.embedded_redis import redis_answers, start_embedded_redis
from athena.extensions import db
from athena.models import Provider
from athena.services.llm_catalog import upsert_builtin_providers
from athena.timeutil import utcnow
from tests.support.servers import LiveServer, WorkerProcess


def _choose_redis(tmp: Path):
    knobs = config.test_settings_from_env()
    if knobs["redis_url"]:
        return knobs["redis_url"], None
    server = knobs["server_redis"]
    if server and redis_answers(server):
        return f"{server.rstrip('/')}/{knobs['server_redis_db']}", None
    embedded = start_embedded_redis()
    return embedded.url, embedded


@pytest.fixture(scope="session")
def test_settings(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("athena")
    knobs = config.test_settings_from_env()
    database_url = knobs["database_url"] or f"sqlite:///{tmp / 'test.db'}"
    redis_url, embedded = _choose_redis(tmp)
    yield {"database_url": database_url, "redis_url": redis_url, "tmp": tmp, "queue": f"athena-test-{os.getpid()}"}
    if embedded is not None:
        embedded.stop()


@pytest.fixture(scope="session")
def app(test_settings):
    class Cfg(config.TestConfig):
        SQLALCHEMY_DATABASE_URI = config._database_url(test_settings["database_url"])
        REDIS_URL = test_settings["redis_url"]
        QUEUE_NAME = test_settings["queue"]

    application = create_app(Cfg)
    with application.app_context():
        from flask_migrate import upgrade

        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
        upgrade()  # the checked-in migrations, not create_all: tests prove them
    return application


def _clean(application) -> None:
    """Empty every table. The worker process (and its periodic sweeper) may be touching rows at
    the same moment: on PostgreSQL a TRUNCATE can then lose a deadlock, so it is retried."""
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    for attempt in range(10):
        try:
            if db.engine.dialect.name == "postgresql":
                db.session.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    db.session.execute(text(f"DELETE FROM {table}"))
            # the built-in providers are data the migration seeds: put back as it left them
            upsert_builtin_providers(db.session.connection(), Provider.__table__, utcnow())
            db.session.commit()
            return
        except OperationalError:
            db.session.rollback()
            if attempt == 9:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture(autouse=True)
def _app_context(request, app):
    with app.app_context():
        yield
        db.session.rollback()
        _clean(app)
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def redis_conn(test_settings) -> Redis:
    return Redis.from_url(test_settings["redis_url"])


@pytest.fixture(scope="session")
def worker(app, test_settings, fake_openai_server):
    process = WorkerProcess(
        test_settings["database_url"], test_settings["redis_url"], test_settings["queue"],
        test_settings["tmp"] / "worker.log",
        extra_env={"OPENAI_BASE_URL": fake_openai_server.base_url, "OPENAI_API_KEY": "test-key",
                   # the local HTTP targets of the tests; a short lease so crash tests detect fast
                   "ATHENA_HTTP_ALLOWLIST": "127.0.0.1", "ATHENA_LEASE_SECONDS": "2"},
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def live_server(app):
    server = LiveServer(app).start()
    yield server
    server.stop()
