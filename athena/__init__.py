"""Athena: workflow automation backend. ``create_app`` is the only way to get an app."""
from __future__ import annotations

from importlib import import_module
from pathlib import Path

from flask import Flask, send_from_directory
from sqlalchemy import event
from werkzeug.exceptions import HTTPException

# Registered in this order; one module per resource, each exposing ``blp``.
BLUEPRINT_MODULES = (
    "athena.api.auth",
    "athena.api.workspaces",
    "athena.api.workflows",
    "athena.api.executions",
    "athena.api.webhooks",
    "athena.api.approvals",
    "athena.api.generate",
    "athena.api.providers",
    "athena.api.accounts",
    "athena.api.large_language_models",
)


def _sqlite_pragmas(engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def _queue_sqlite_writers(app: Flask) -> None:
    """SQLite files: writers wait in line instead of SQLite's sleep-and-retry (athena/sqlite_writer.py)."""
    from sqlalchemy.engine import make_url

    from athena.sqlite_writer import connect_args

    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite" or not app.config.get("SQLITE_WRITER_QUEUE", True):
        return
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    options["connect_args"] = {**connect_args(url.database), **options.get("connect_args", {})}
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _register_docs_assets(app: Flask) -> None:
    """Swagger UI assets come from the swagger-ui-bundle package: no CDN at run time."""
    from swagger_ui_bundle import swagger_ui_path

    @app.get("/api/v1/docs-assets/<path:filename>")
    def swagger_assets(filename: str):
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)


def create_app(config_object: object | str | None = None) -> Flask:
    from athena.auth import SECURITY_SCHEMES
    from config import config_for

    app = Flask(__name__, instance_path=None)
    if config_object is None or isinstance(config_object, str):
        config_object = config_for(config_object)
    app.config.from_object(config_object)
    app.json.sort_keys = False  # keep the documented field order
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", "/api/v1/docs-assets/")
    app.config["API_SPEC_OPTIONS"] = {
        "components": {"securitySchemes": SECURITY_SCHEMES},
        "info": {"description": "Athena workflow automation API"},
    }

    from athena import admin, cli, models, websocket  # noqa: F401  (models register their tables)
    from athena.engine import budget
    from athena.api.base import api
    from athena.extensions import db, migrate, sock
    from athena.redis_client import init_redis
    from athena.urlconverters import UuidString, uuid_parameter_schema

    app.url_map.converters["uuid"] = UuidString
    budget.configure(max_iterations=app.config["EXPRESSION_MAX_ITERATIONS"],
                     max_value_size=app.config["EXPRESSION_MAX_VALUE_SIZE"],
                     max_built=app.config["EXPRESSION_MAX_BUILT"])
    _queue_sqlite_writers(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    sock.init_app(app)
    api.init_app(app)
    init_redis(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _sqlite_pragmas(db.engine)
            db.engine.dispose()

    api.register_converter(UuidString, uuid_parameter_schema)
    for name in BLUEPRINT_MODULES:
        api.register_blueprint(import_module(name).blp)
    websocket.init_app(app)

    _register_docs_assets(app)
    admin.init_app(app)
    cli.init_app(app)

    @app.errorhandler(HTTPException)
    def _json_errors(error: HTTPException):
        # Errors raised outside smorest views (404 for unknown URLs, 405, 413) are JSON too.
        return api.handle_http_exception(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error", exc_info=error)
        return {"message": "Internal server error"}, 500

    return app
