"""gunicorn settings of the API (gunicorn reads ./gunicorn.conf.py): ``gunicorn wsgi:app``.

Like the shell defaults it replaces (``${WEB_CONCURRENCY:-2}``, ``${PORT:-5000}``), it reads
gunicorn's own environment, not the app's (that is config.py). Command-line options override
these (``gunicorn -w 4 --threads 16 -b 127.0.0.1:8000 wsgi:app``); docs/deployment.md.
"""
import os

# gthread (threads also serve the WebSockets), answering gunicorn's own errors (414, 431, 400) as JSON.
worker_class = "athena.gunicorn_worker.JsonErrorWorker"
threads = 32
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
bind = f"0.0.0.0:{os.environ.get('PORT') or 5000}"
