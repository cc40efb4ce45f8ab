"""docker-compose.yml, parsed (no Docker engine on these machines): nothing unauthenticated is
published, every documented setting reaches the containers, SECRET_KEY is required, web and worker
have healthchecks and a stop grace period long enough for the SIGTERM hand-over. The healthcheck
commands themselves run in tests/deploy/test_healthchecks.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
APP_SERVICES = ("web", "worker")
# Services that may publish a port: they authenticate every request themselves (the API's routes,
# and its /rq jobs dashboard, admin only).
PUBLISHED = {"web": 5000}
# Values compose sets itself (the other containers); everything else passes through from the host.
FIXED = {"ATHENA_ENV": "production", "DATABASE_URL": "postgresql://athena:athena@postgres:5432/athena",
         "REDIS_URL": "redis://redis:6379/0"}
# Variables config.py reads that the containers must NOT get, and why.
NOT_PASSED = {
    "PORT": "the image sets 5000, which `ports` publishes and the healthcheck calls",
    "ATHENA_INSTANCE_DIR": "the image sets /app/instance (SQLite/embedded Redis only: unused with PostgreSQL)",
    "ATHENA_HOST": "`make run` only (gunicorn.conf.py binds 0.0.0.0:PORT)",
    "ATHENA_EMBEDDED_REDIS_PORT": "`make run` only (compose has a Redis service)",
    "ATHENA_SHUTDOWN_TIMEOUT": "`make run` only (compose: stop_grace_period)",
    "ATHENA_TOKEN": "the `watch` CLI, a client",
    "ATHENA_URL": "the `watch` CLI, a client",
    "ATHENA_TEST_DATABASE_URL": "the tests",
    "ATHENA_TEST_REDIS_URL": "the tests",
    "ATHENA_TEST_SERVER_REDIS": "the tests",
    "ATHENA_TEST_REDIS_DB": "the tests",
}
MIN_STOP_GRACE_SECONDS = 30


@pytest.fixture(autouse=True)
def _app_context():
    """Parses files only: no app or database needed."""
    yield


def config_variables() -> set[str]:
    """Every environment variable config.py (the only reader of the environment) reads."""
    source = (REPO / "config.py").read_text()
    names = set(re.findall(r'_env\w*\(\s*"([A-Z][A-Z0-9_]*)"', source))
    names |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]*)"', source))
    return names


def readme_configuration_variables() -> set[str]:
    """The variables of README.md's configuration table. A row may abbreviate the names after
    the first (`ATHENA_EXECUTION_MAX_STEPS` / `_MAX_DURATION`): those are resolved against the
    names config.py reads."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    known = config_variables()
    found: set[str] = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        names = re.findall(r"`([A-Z_][A-Z0-9_]*)`", row.split("|")[1])
        first = names[0]
        found.add(first)
        for name in names[1:]:
            if not name.startswith("_"):
                found.add(name)
                continue
            candidates = [first[:i] + name for i in range(len(first), 0, -1) if first[i - 1] != "_"
                          and first[:i] + name in known]
            assert candidates, f"README configuration table: cannot resolve {name!r} (row of {first})"
            found.add(candidates[0])
    return found


def documented_variables() -> set[str]:
    """config.py's variables that README.md or docs/*.md mention."""
    text = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    return {name for name in config_variables() if re.search(rf"(?<![A-Z0-9_]){name}(?![A-Z0-9_])", text)}


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def seconds(duration: str | int) -> float:
    """A compose duration (`30s`, `1m30s`, `90`) in seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


# -- published ports -------------------------------------------------------------------------
def test_only_web_publishes_a_port_and_nothing_unauthenticated_is_reachable() -> None:
    for name, service in SERVICES.items():
        assert service.get("network_mode") != "host", f"{name} shares the host's network (publishes everything)"
        if name not in PUBLISHED:
            assert not service.get("ports"), f"{name} publishes {service['ports']}: it does not authenticate"
    for name, container_port in PUBLISHED.items():
        for mapping in SERVICES[name].get("ports", []):
            target = mapping.get("target") if isinstance(mapping, dict) else str(mapping).rsplit(":", 1)[-1]
            assert str(target).split("/")[0] == str(container_port), f"{name} publishes {mapping}"


def test_no_separate_rq_dashboard_service() -> None:
    """The app's own /rq dashboard is admin only (athena/admin.py); a separate rq-dashboard would
    serve Redis (requeue, delete jobs) to anyone who reaches it."""
    for name, service in SERVICES.items():
        command = service.get("command") or []
        command = command if isinstance(command, str) else " ".join(command)
        assert "rq-dashboard" not in command and "rq_dashboard" not in command, f"{name} runs rq-dashboard"
        assert "rq-dashboard" not in str(service.get("image", "")), name


# -- environment -----------------------------------------------------------------------------
def test_readme_configuration_table_is_parsed_against_config_py() -> None:
    table = readme_configuration_variables()
    assert {"DATABASE_URL", "SECRET_KEY", "OPENAI_BASE_URL", "ATHENA_EXECUTION_MAX_DURATION",
            "ATHENA_EXPRESSION_MAX_BUILT"} <= table
    unknown = table - config_variables()
    assert not unknown, f"README documents variables config.py does not read: {unknown}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_variable_of_the_readme_configuration_table_is_passed(service: str) -> None:
    env = environment(service)
    missing = sorted(v for v in readme_configuration_variables() - set(NOT_PASSED) if v not in env)
    assert not missing, f"{service} does not get {missing} (README.md, Configuration)"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_documented_variable_is_passed_llm_ones_included(service: str) -> None:
    env = environment(service)
    llm = {v for v in config_variables() if v.startswith(("OPENAI_", "ATHENA_LLM_"))}
    assert {"OPENAI_API_KEY", "OPENAI_BASE_URL", "ATHENA_LLM_MODEL"} <= llm
    missing = sorted(v for v in (documented_variables() | llm) - set(NOT_PASSED) if v not in env)
    assert not missing, f"{service} does not get {missing} (documented in README.md or docs/)"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_config_variable_is_passed_or_excluded_for_a_reason(service: str) -> None:
    """A new setting in config.py must be passed through or listed in NOT_PASSED."""
    env = environment(service)
    undecided = sorted(config_variables() - set(NOT_PASSED) - set(env))
    assert not undecided, f"{service}: pass {undecided} in docker-compose.yml (x-athena-env) or add to NOT_PASSED"
    passed_anyway = sorted(set(NOT_PASSED) & set(env))
    assert not passed_anyway, f"{service} gets {passed_anyway}, which are not for containers"
    assert set(NOT_PASSED) <= config_variables(), "NOT_PASSED names a variable config.py no longer reads"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_variables_pass_through_from_the_host_unchanged(service: str) -> None:
    """`NAME: ${NAME:-}`: the operator's value, else empty, which config.py reads as its default."""
    for name, value in environment(service).items():
        if name in FIXED:
            assert value == FIXED[name], f"{service}: {name}={value!r}"
        elif name == "SECRET_KEY":
            continue
        else:
            pattern = rf"\$\{{{name}(:-[^}}]*)?\}}"
            assert re.fullmatch(pattern, value), f"{service}: {name}: {value!r} is not ${{{name}:-...}}"


def test_secret_key_is_required_with_no_default() -> None:
    for service in ("migrate", *APP_SERVICES):
        value = environment(service)["SECRET_KEY"]
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", value), f"{service}: SECRET_KEY: {value!r}"
        assert environment(service)["SECRET_KEY_FALLBACKS"] == "${SECRET_KEY_FALLBACKS:-}"


def test_web_worker_and_migrate_share_one_configuration() -> None:
    web, worker, migrate = environment("web"), environment("worker"), environment("migrate")
    assert worker == migrate
    assert {k: v for k, v in web.items() if k in worker} == worker, "web and worker disagree on a setting"
    assert set(web) - set(worker) <= {"WEB_CONCURRENCY"}, set(web) - set(worker)


# -- healthchecks and stopping ---------------------------------------------------------------
@pytest.mark.parametrize("service", APP_SERVICES)
def test_web_and_worker_have_healthchecks_that_are_plain_commands(service: str) -> None:
    check = SERVICES[service].get("healthcheck")
    assert check and not check.get("disable"), f"{service} has no healthcheck"
    test = check["test"]
    assert isinstance(test, list) and test[0] == "CMD", f"{service}: exec form, no shell needed: {test}"
    assert test[1:4] == ["python", "-m", "athena.healthcheck"] and test[4] == service, test
    assert seconds(check["interval"]) <= 60 and seconds(check["timeout"]) >= 5
    assert int(check["retries"]) >= 1 and seconds(check["start_period"]) >= 10


@pytest.mark.parametrize("service", APP_SERVICES)
def test_stop_grace_period_covers_the_sigterm_hand_over(service: str) -> None:
    grace = SERVICES[service].get("stop_grace_period")
    assert grace is not None, f"{service}: Docker's default 10 s grace cuts the SIGTERM hand-over short"
    assert seconds(grace) >= MIN_STOP_GRACE_SECONDS, f"{service}: stop_grace_period {grace}"
    signal = SERVICES[service].get("stop_signal", "SIGTERM")
    assert signal == "SIGTERM", f"{service}: stop_signal {signal}: the warm shutdown needs SIGTERM"


def test_every_app_service_builds_this_repository() -> None:
    for service in ("migrate", *APP_SERVICES):
        assert SERVICES[service].get("build") == ".", service
