"""Configuration: the only module that reads the process environment.

Every setting has an embedded default so a machine with nothing but Python can run
Athena (SQLite file database, embedded Redis started by ``make run``).
"""
from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("ATHENA_INSTANCE_DIR", BASE_DIR / "instance"))


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in (_env(name, "") or "").split(",") if item.strip()]


def _database_url(default: str) -> str:
    url = _env("DATABASE_URL", default) or default
    # Heroku-style URLs and the psycopg 3 driver.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


# The development default below and every key the repository ships or documents as an example:
# ATHENA_ENV=production refuses to start with one of these (see ProductionConfig).
DEV_SECRET_KEY = "dev-insecure-change-me"
SHIPPED_SECRET_KEYS = frozenset({DEV_SECRET_KEY, "change-me"})
MIN_SECRET_KEY_BYTES = 32
MAKE_A_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


class InsecureSecretKey(RuntimeError):
    """ATHENA_ENV=production with a SECRET_KEY that is missing, too short or a shipped default."""


def check_secret_key(key: object) -> None:
    """Raise :class:`InsecureSecretKey` unless ``key`` is fit for production: set, at least
    ``MIN_SECRET_KEY_BYTES`` bytes (UTF-8) and not one of ``SHIPPED_SECRET_KEYS``."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else ("" if key is None else str(key))
    if not text:
        problem = "SECRET_KEY is not set"
    elif text.strip().lower() in SHIPPED_SECRET_KEYS:
        problem = f"SECRET_KEY is {text!r}, a default shipped with Athena"
    elif len(text.encode()) < MIN_SECRET_KEY_BYTES:
        problem = f"SECRET_KEY is {len(text.encode())} bytes long, shorter than {MIN_SECRET_KEY_BYTES}"
    else:
        return
    raise InsecureSecretKey(
        f"ATHENA_ENV=production refuses to start: {problem}. Generate a key with\n"
        f"    {MAKE_A_SECRET_KEY}\n"
        "and set it as SECRET_KEY in the environment. If secrets were already stored under an older "
        "key, list that key in SECRET_KEY_FALLBACKS (comma-separated) so they stay readable, then run "
        "`flask --app wsgi secrets rotate` (docs/deployment.md, \"Secret key and rotation\")."
    )


class _ProductionSecretKeyCheck:
    """``app.config.from_object`` reads every upper-case attribute of the config class, so reading
    this one (``SECRET_KEY_CHECKED``) runs :func:`check_secret_key` on the class's ``SECRET_KEY``:
    ``create_app()`` raises before the app exists (subclasses included)."""

    def __get__(self, instance: object, owner: type) -> bool:
        check_secret_key(getattr(instance if instance is not None else owner, "SECRET_KEY", None))
        return True


class Config:
    """Defaults for `make run` on one machine."""

    ENV_NAME = "development"
    SECRET_KEY = _env("SECRET_KEY", DEV_SECRET_KEY)
    # Older keys, still used to read secrets stored under them (athena/crypto.py) and, as Flask
    # 3.1 does, to verify signed sessions; never to write. Comma-separated in the environment.
    SECRET_KEY_FALLBACKS = _env_list("SECRET_KEY_FALLBACKS")
    SQLALCHEMY_DATABASE_URI = _database_url(f"sqlite:///{INSTANCE_DIR / 'athena.db'}")
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    # Empty means: use the embedded Redis started by `make run` (see athena/dev/embedded_redis.py).
    REDIS_URL = _env("REDIS_URL")
    EMBEDDED_REDIS_PORT = _env_int("ATHENA_EMBEDDED_REDIS_PORT", 6390)
    INSTANCE_DIR = str(INSTANCE_DIR)
    HOST = _env("ATHENA_HOST", "127.0.0.1")
    PORT = _env_int("PORT", 5000)
    QUEUE_NAME = _env("ATHENA_QUEUE", "athena")
    # `make run` (athena/dev/devserver.py): seconds children get to stop before SIGKILL
    SHUTDOWN_TIMEOUT_SECONDS = _env_float("ATHENA_SHUTDOWN_TIMEOUT", 10.0)

    # Auth
    SESSION_TOKEN_TTL_SECONDS = _env_int("ATHENA_SESSION_TOKEN_TTL", 7 * 24 * 3600)
    APP_TOKEN_TTL_SECONDS = _env_int("ATHENA_APP_TOKEN_TTL", 0)  # 0 = never expires
    # Failed credential checks (sign-in, HTTP Basic on GET /user) per account (normalised email)
    # and per client address (remote_addr; IPv6 by /64), fixed windows in Redis
    # (athena/services/credential_limits.py); past a limit, 429 before any argon2 work. 0 disables.
    AUTH_FAILURE_LIMIT_PER_ACCOUNT = _env_int("ATHENA_AUTH_FAILURE_LIMIT_ACCOUNT", 10)
    AUTH_FAILURE_LIMIT_PER_ADDRESS = _env_int("ATHENA_AUTH_FAILURE_LIMIT_ADDRESS", 50)
    AUTH_FAILURE_WINDOW_SECONDS = _env_float("ATHENA_AUTH_FAILURE_WINDOW", 300.0)

    # Limits
    MAX_CONTENT_LENGTH = _env_int("ATHENA_MAX_BODY_BYTES", 2 * 1024 * 1024)
    MAX_NODES_PER_WORKFLOW = _env_int("ATHENA_MAX_NODES", 500)
    EXECUTION_MAX_STEPS = _env_int("ATHENA_EXECUTION_MAX_STEPS", 10_000)
    EXECUTION_MAX_DURATION = _env_float("ATHENA_EXECUTION_MAX_DURATION", 3600.0)
    # One evaluation of an expression or template (athena/engine/budget.py): loop iterations and
    # range() items; characters/items of one value it builds; characters/items built in total.
    EXPRESSION_MAX_ITERATIONS = _env_int("ATHENA_EXPRESSION_MAX_ITERATIONS", 1_000_000)
    EXPRESSION_MAX_VALUE_SIZE = _env_int("ATHENA_EXPRESSION_MAX_VALUE_SIZE", 1_000_000)
    EXPRESSION_MAX_BUILT = _env_int("ATHENA_EXPRESSION_MAX_BUILT", 10_000_000)
    WEBHOOK_WAIT_TIMEOUT = _env_float("ATHENA_WEBHOOK_WAIT_TIMEOUT", 30.0)
    # A webhook call with ?wait=true whose workflow has only pure nodes (set, transform, switch...)
    # and at most this many runs in the API process (athena/services/inline.py); 0 = never.
    INLINE_MAX_NODES = _env_int("ATHENA_INLINE_MAX_NODES", 50)
    # Inline runs at a time per API process; a call waits up to INLINE_WAIT_SECONDS for a free
    # slot (an inline run is a few ms of CPU), then goes through the queue.
    INLINE_CONCURRENCY = _env_int("ATHENA_INLINE_CONCURRENCY", 4)
    INLINE_WAIT_SECONDS = _env_float("ATHENA_INLINE_WAIT", 0.5)
    # Signed webhooks: how far X-Athena-Timestamp may be from now (either way), in seconds.
    WEBHOOK_SIGNATURE_TOLERANCE_SECONDS = _env_int("ATHENA_WEBHOOK_SIGNATURE_TOLERANCE", 300)
    # Webhook rate limit per workflow (fixed window in Redis): requests per window; 0 disables.
    WEBHOOK_RATE_LIMIT = _env_int("ATHENA_WEBHOOK_RATE_LIMIT", 600)
    WEBHOOK_RATE_WINDOW_SECONDS = _env_float("ATHENA_WEBHOOK_RATE_WINDOW", 60.0)
    # Schedule triggers: how often each worker's reconcile pass runs (one pass per interval
    # cluster-wide) and how long a tick's Redis claim lives (the database check outlives it).
    SCHEDULE_RECONCILE_SECONDS = _env_int("ATHENA_SCHEDULE_RECONCILE_SECONDS", 60)
    SCHEDULE_CLAIM_TTL_SECONDS = _env_int("ATHENA_SCHEDULE_CLAIM_TTL", 3600)
    EVENT_LOG_MAXLEN = _env_int("ATHENA_EVENT_LOG_MAXLEN", 10_000)
    EVENT_LOG_TTL_SECONDS = _env_int("ATHENA_EVENT_LOG_TTL", 7 * 24 * 3600)
    WS_PING_SECONDS = _env_float("ATHENA_WS_PING_SECONDS", 20.0)
    # WebSocket relay: longest blocking XREAD (a closed client frees its thread within this),
    # how often an idle socket re-checks its token/access, and how long a socket waits for
    # `execution.finished` once the database says the execution finished.
    WS_POLL_SECONDS = _env_float("ATHENA_WS_POLL_SECONDS", 1.0)
    WS_RECHECK_SECONDS = _env_float("ATHENA_WS_RECHECK_SECONDS", 30.0)
    WS_FINISH_GRACE_SECONDS = _env_float("ATHENA_WS_FINISH_GRACE_SECONDS", 2.0)
    # One reader per process fans events out (athena/websocket/fanout.py): a socket more than
    # this many events behind is closed with 1013 (reconnect with after_seq); the hub gives up
    # (1011) after this long without a successful read of Redis.
    WS_QUEUE_LIMIT = _env_int("ATHENA_WS_QUEUE_LIMIT", 5000)
    WS_HUB_FAIL_SECONDS = _env_float("ATHENA_WS_HUB_FAIL_SECONDS", 10.0)
    # Events written as frames made once per process, by the hub thread to idle workspace sockets
    # (simple-websocket internals); "0": only the library's send(), by each socket's own thread.
    # docs/websocket.md has the measurement behind the default.
    WS_DIRECT_WRITE = str(_env("ATHENA_WS_DIRECT_WRITE", "1")).strip().lower() not in ("0", "false", "no", "off")
    JOB_TIMEOUT_SECONDS = _env_int("ATHENA_JOB_TIMEOUT", 3600)
    # Crash recovery: lease TTL of a running execution, sweeper period, crashes before failing.
    EXECUTION_LEASE_SECONDS = _env_float("ATHENA_LEASE_SECONDS", 15.0)
    SWEEPER_INTERVAL_SECONDS = _env_int("ATHENA_SWEEPER_INTERVAL", 15)
    SWEEPER_GRACE_SECONDS = _env_float("ATHENA_SWEEPER_GRACE", 5.0)
    EXECUTION_MAX_CRASHES = _env_int("ATHENA_MAX_CRASHES", 3)
    # Group commit: checkpoints and events of pure nodes (set, transform, switch...) are batched
    # for up to this many seconds; 0 checkpoints every node. Impure nodes never wait for a batch.
    CHECKPOINT_INTERVAL_SECONDS = _env_float("ATHENA_CHECKPOINT_INTERVAL", 0.025)

    # Outbound HTTP (SSRF guard allowlist: hosts or CIDRs that may be private)
    HTTP_ALLOWLIST = _env_list("ATHENA_HTTP_ALLOWLIST")
    HTTP_MAX_RESPONSE_BYTES = _env_int("ATHENA_HTTP_MAX_RESPONSE_BYTES", 5 * 1024 * 1024)
    HTTP_DEFAULT_TIMEOUT = _env_float("ATHENA_HTTP_TIMEOUT", 30.0)

    # LLM
    OPENAI_API_KEY = _env("OPENAI_API_KEY")
    OPENAI_BASE_URL = _env("OPENAI_BASE_URL")
    LLM_DEFAULT_MODEL = _env("ATHENA_LLM_MODEL", "gpt-4.1-mini")
    LLM_TIMEOUT = _env_float("ATHENA_LLM_TIMEOUT", 120.0)
    GENERATE_HEARTBEAT_SECONDS = _env_float("ATHENA_GENERATE_HEARTBEAT", 10.0)
    # The client layer (athena/services/llm_client.py, docs/llm.md): retries of a call on 429/5xx
    # and unreachable servers, with exponential backoff from LLM_RETRY_BACKOFF seconds; a provider
    # Retry-After longer than LLM_RETRY_MAX_WAIT is passed on at once instead. The llm node's own
    # retries are its settings.retry, so its client retries LLM_NODE_MAX_RETRIES times (0).
    LLM_MAX_RETRIES = _env_int("ATHENA_LLM_MAX_RETRIES", 2)
    LLM_NODE_MAX_RETRIES = _env_int("ATHENA_LLM_NODE_MAX_RETRIES", 0)
    LLM_RETRY_BACKOFF = _env_float("ATHENA_LLM_RETRY_BACKOFF", 0.5)
    LLM_RETRY_MAX_WAIT = _env_float("ATHENA_LLM_RETRY_MAX_WAIT", 10.0)
    # Checking an account against its provider (a models listing) and the model sync job.
    LLM_VERIFY_TIMEOUT = _env_float("ATHENA_LLM_VERIFY_TIMEOUT", 15.0)
    # Provider base URLs pass the SSRF guard under ATHENA_ENV=production unless their host (or
    # address/CIDR) is listed here, e.g. an Ollama on the private network.
    LLM_ALLOWLIST = _env_list("ATHENA_LLM_ALLOWLIST")
    LLM_SSRF_GUARD = False

    # OpenAPI / docs (assets served from the swagger-ui-bundle package, no CDN)
    API_TITLE = "Athena API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    JSON_SORT_KEYS = False


class ProductionConfig(Config):
    ENV_NAME = "production"
    SECRET_KEY = _env("SECRET_KEY")  # no default: check_secret_key refuses a missing key
    SECRET_KEY_CHECKED = _ProductionSecretKeyCheck()
    LLM_SSRF_GUARD = True


class TestConfig(Config):
    ENV_NAME = "test"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = _database_url(
        _env("ATHENA_TEST_DATABASE_URL", "sqlite:///" + str(INSTANCE_DIR / "test.db")) or ""
    )
    REDIS_URL = _env("ATHENA_TEST_REDIS_URL")
    SESSION_TOKEN_TTL_SECONDS = 3600
    # Every test client is 127.0.0.1 and test runs share one Redis, where fuzzing signs in with
    # random credentials by the dozen: the credential limits stay on (every sign-in still goes
    # through the counters) but out of reach here. Their own tests set the values they exercise
    # (tests/security/test_credential_rate_limit.py: config.Config's defaults, and explicit ones).
    AUTH_FAILURE_LIMIT_PER_ACCOUNT = 100_000
    AUTH_FAILURE_LIMIT_PER_ADDRESS = 100_000
    WS_PING_SECONDS = 1.0
    # Tests never reach a real LLM provider: they point these at the local fake server.
    OPENAI_API_KEY = None
    OPENAI_BASE_URL = None
    LLM_RETRY_BACKOFF = 0.05


def watch_settings_from_env() -> dict[str, str | None]:
    """Defaults of ``python -m athena.cli watch``: ATHENA_TOKEN and ATHENA_URL."""
    return {"token": _env("ATHENA_TOKEN"), "url": _env("ATHENA_URL", "http://127.0.0.1:5000")}


def test_settings_from_env() -> dict[str, str | None]:
    """Environment knobs the test suite reads (kept here: config.py reads the environment)."""
    return {
        "database_url": _env("ATHENA_TEST_DATABASE_URL"),
        "redis_url": _env("ATHENA_TEST_REDIS_URL"),
        "server_redis": _env("ATHENA_TEST_SERVER_REDIS", "redis://127.0.0.1:6379"),
        "server_redis_db": _env("ATHENA_TEST_REDIS_DB", "13"),
    }


def child_process_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes started by the dev server: ours plus ``overrides``."""
    env = dict(os.environ)
    env.update(overrides or {})
    return env


CONFIGS = {"development": Config, "production": ProductionConfig, "test": TestConfig}


def config_for(name: str | None = None) -> type[Config]:
    return CONFIGS[name or _env("ATHENA_ENV", "development") or "development"]
