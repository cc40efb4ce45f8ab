"""One Flask app per worker process, created lazily on the first job (never at import)."""
from __future__ import annotations

from flask import Flask, current_app, has_app_context

_app: Flask | None = None


def worker_app() -> Flask:
    global _app
    if has_app_context():
        return current_app._get_current_object()
    if _app is None:
        from athena import create_app

        _app = create_app()
    return _app
