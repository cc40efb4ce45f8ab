"""Tools for a developer's machine, not the product: ``make run``'s supervisor
(:mod:`athena.dev.devserver`), the embedded Redis it and the tests start
(:mod:`athena.dev.embedded_redis`), and the ``watch`` CLI (:mod:`athena.dev.watch`,
``python -m athena.cli watch``). Production runs gunicorn (``wsgi:app``) and ``jobs.worker``."""
