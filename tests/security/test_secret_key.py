"""Issue 14 item 1: production refuses an unsafe SECRET_KEY; stored secrets live under a key ring
(SECRET_KEY writes, SECRET_KEY_FALLBACKS still read), `flask --app wsgi secrets rotate` moves them
to the current key, and a value no key decrypts is an explicit error, never a silent None."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
from itertools import count

import pytest
from cryptography.fernet import InvalidToken

import config
from athena import create_app
from athena.crypto import PREFIX, UndecryptableSecret, _fernet, decrypt, encrypt, rotate
from athena.extensions import db
from athena.models import Workflow
from athena.services.secrets import runtime_variables
from tests.factories import headers_for, make_user, make_workspace
from tests.support.servers import ROOT, wait_for

WORKFLOWS = "/api/v1/workflows"
EXECUTIONS = "/api/v1/workflow-executions"
WEBHOOK_SECRET = "whsec-rotation-0123456789abcdef"
VARIABLE_SECRET = "sk-live-rotation-secret-value"
HOW_TO_MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
_bodies = count()


def new_key() -> str:
    return secrets.token_urlsafe(48)


# --- production refuses an unsafe SECRET_KEY ---------------------------------------------------

def _production(key: str | None, database_url: str) -> type[config.ProductionConfig]:
    class Production(config.ProductionConfig):
        SECRET_KEY = key
        SQLALCHEMY_DATABASE_URI = config._database_url(database_url)

    return Production


@pytest.mark.parametrize("key, problem", [
    ("change-me", "a default shipped with Athena"),               # docker-compose.yml's old default
    (config.DEV_SECRET_KEY, "a default shipped with Athena"),     # config.py's development default
    ("x" * 31, "31 bytes long, shorter than 32"),
    (None, "SECRET_KEY is not set"),
])
def test_production_config_with_a_default_or_short_key_refuses_to_start(key, problem, test_settings):
    with pytest.raises(config.InsecureSecretKey) as refused:
        create_app(_production(key, f"sqlite:///{test_settings['tmp'] / 'refused.db'}"))
    message = str(refused.value)
    assert "ATHENA_ENV=production refuses to start" in message and problem in message
    assert HOW_TO_MAKE_ONE in message and "SECRET_KEY_FALLBACKS" in message


def test_production_config_with_a_generated_key_starts(test_settings):
    key = new_key()
    app = create_app(_production(key, f"sqlite:///{test_settings['tmp'] / 'accepted.db'}"))
    assert app.config["SECRET_KEY"] == key and app.config["ENV_NAME"] == "production"


def _subprocess_env(tmp, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "ATHENA_", "FLASK_"))}
    env.update({"ATHENA_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp / 'subprocess.db'}",
                "PYTHONUNBUFFERED": "1", **overrides})
    return env


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


IMPORT_WSGI = [sys.executable, "-c", "import wsgi"]  # what gunicorn wsgi:app imports
FLASK_DB_UPGRADE = [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"]  # compose's migrate


@pytest.mark.parametrize("command, key", [
    (IMPORT_WSGI, "change-me"), (IMPORT_WSGI, "too-short-key"), (IMPORT_WSGI, None),
    (FLASK_DB_UPGRADE, "change-me"),
])
def test_a_production_process_with_a_bad_key_exits_non_zero_saying_how_to_make_one(command, key, test_settings):
    overrides = {} if key is None else {"SECRET_KEY": key}
    result = _run(command, _subprocess_env(test_settings["tmp"], **overrides))
    assert result.returncode != 0, result.stdout + result.stderr
    assert "config.InsecureSecretKey: ATHENA_ENV=production refuses to start" in result.stderr
    assert HOW_TO_MAKE_ONE in result.stderr


def test_a_production_process_with_a_generated_key_starts(test_settings):
    result = _run([sys.executable, "-c", "import wsgi; print(wsgi.app.config['ENV_NAME'])"],
                  _subprocess_env(test_settings["tmp"], SECRET_KEY=new_key()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "production"


def test_compose_requires_a_secret_key():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "SECRET_KEY: ${SECRET_KEY:?set SECRET_KEY" in compose
    assert "change-me" not in compose
    assert "SECRET_KEY_FALLBACKS: ${SECRET_KEY_FALLBACKS:-}" in compose


# --- the key ring ----------------------------------------------------------------------------

@pytest.fixture
def keyring(app):
    """Sets the app's SECRET_KEY and SECRET_KEY_FALLBACKS; puts the originals back afterwards."""
    saved = app.config["SECRET_KEY"], app.config.get("SECRET_KEY_FALLBACKS")

    def use(key: str, fallbacks: list[str] | None = None) -> None:
        app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"] = key, list(fallbacks or [])

    yield use
    app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"] = saved


def opens_under(key: str, stored: str) -> bool:
    """Whether ``key`` alone decrypts the stored value."""
    try:
        _fernet(key).decrypt(stored[len(PREFIX):].encode())
        return True
    except InvalidToken:
        return False


def test_the_key_ring_writes_under_the_key_and_reads_the_fallbacks(keyring):
    key_a, key_b, key_c = new_key(), new_key(), new_key()
    keyring(key_a)
    token = encrypt("hello")
    assert token.startswith(PREFIX) and "hello" not in token and decrypt(token) == "hello"
    keyring(key_b, [key_c, key_a])
    assert decrypt(token) == "hello"
    assert opens_under(key_b, encrypt("new")) and not opens_under(key_a, encrypt("new"))
    rotated = rotate(token)
    assert rotated != token and opens_under(key_b, rotated) and rotate(rotated) == rotated
    keyring(key_b)
    with pytest.raises(UndecryptableSecret) as error:
        decrypt(token, "the thing")
    assert str(error.value) == ("the thing cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS: add the "
                                "SECRET_KEY it was written under to SECRET_KEY_FALLBACKS, or re-enter the secret.")
    with pytest.raises(UndecryptableSecret):
        rotate(token)
    assert decrypt("legacy clear value") == "legacy clear value"  # written before encryption


def test_fallbacks_come_from_the_environment_comma_separated(test_settings):
    result = _run([sys.executable, "-c", "import config; print(config.Config.SECRET_KEY_FALLBACKS)"],
                  _subprocess_env(test_settings["tmp"], SECRET_KEY_FALLBACKS="old-key-1, old-key-2,,"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['old-key-1', 'old-key-2']"


# --- rotation end to end: the API, the stored rows, the CLI -----------------------------------

def _graph() -> tuple[list[dict], list[dict]]:
    nodes = [{"id": "hook", "type": "webhook", "parameters": {}},
             {"id": "use", "type": "set", "parameters": {"fields": {
                 "key_length": "{{ variables.api_key | length }}", "n": "{{ trigger.body.n }}"}}}]
    return nodes, [{"id": "e1", "source": "hook", "target": "use"}]


def _create(client, owner, workspace) -> str:
    nodes, edges = _graph()
    response = client.post(WORKFLOWS, headers=headers_for(owner), json={
        "workspace_uuid": workspace.uuid, "name": "rotation", "nodes": nodes, "edges": edges,
        "webhook_secret": WEBHOOK_SECRET,
        "variables": {"api_key": {"secret": True, "value": VARIABLE_SECRET}, "region": "eu"}})
    assert response.status_code == 201, response.json
    return response.json["data"]["uuid"]


def _signed_call(client, uuid: str):
    """A signed ?wait=true call (a pure workflow: it runs in this process, under the app's keys)."""
    n = next(_bodies)
    body = json.dumps({"n": n}).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    response = client.post(f"{WORKFLOWS}/{uuid}/webhook?wait=true", data=body, headers={
        "X-Athena-Timestamp": stamp, "X-Athena-Signature": f"sha256={digest}", "Content-Type": "application/json"})
    return response, n


def _assert_readable_through_the_api(client, uuid: str) -> None:
    response, n = _signed_call(client, uuid)
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["status"] == "completed", data
    assert data["output"] == {"use": {"key_length": len(VARIABLE_SECRET), "n": n}}


def _stored(uuid: str) -> tuple[str, str]:
    db.session.expire_all()
    workflow = db.session.execute(db.select(Workflow).where(Workflow.uuid == uuid)).scalar_one()
    db.session.commit()
    return workflow.webhook_secret, workflow.variables["api_key"]["value"]


def _rotate_command(test_settings, key: str, fallbacks: str) -> subprocess.CompletedProcess:
    """`flask --app wsgi secrets rotate` as an operator runs it: production, keys from the environment."""
    env = _subprocess_env(test_settings["tmp"], SECRET_KEY=key, SECRET_KEY_FALLBACKS=fallbacks,
                          DATABASE_URL=test_settings["database_url"], REDIS_URL=test_settings["redis_url"])
    db.session.remove()  # nothing of ours holds the database while it writes
    return _run([sys.executable, "-m", "flask", "--app", "wsgi", "secrets", "rotate"], env)


def test_key_rotation_keeps_every_stored_secret_readable(client, keyring, test_settings):
    key_a, key_b = new_key(), new_key()
    owner = make_user()
    workspace = make_workspace(owner)

    keyring(key_a)
    uuid = _create(client, owner, workspace)
    webhook_a, variable_a = _stored(uuid)
    assert all(opens_under(key_a, value) for value in (webhook_a, variable_a))
    _assert_readable_through_the_api(client, uuid)

    # A new SECRET_KEY, the old one in SECRET_KEY_FALLBACKS: everything still reads.
    keyring(key_b, [key_a])
    _assert_readable_through_the_api(client, uuid)
    assert _stored(uuid) == (webhook_a, variable_a)  # reading rewrites nothing

    # Re-encrypt under B (a real `flask` process, keys from its environment) ...
    done = _rotate_command(test_settings, key_b, f"{new_key()},{key_a}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "re-encrypted 2 under SECRET_KEY, 0 already under it, 0 undecryptable" in done.stdout
    webhook_b, variable_b = _stored(uuid)
    for value in (webhook_b, variable_b):
        assert opens_under(key_b, value) and not opens_under(key_a, value)
    # ... which is idempotent: a second run finds everything under B and writes nothing.
    again = _rotate_command(test_settings, key_b, key_a)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "re-encrypted 0 under SECRET_KEY, 2 already under it, 0 undecryptable" in again.stdout
    assert _stored(uuid) == (webhook_b, variable_b)

    # A removed: B alone reads everything, through the API and at run time.
    keyring(key_b)
    _assert_readable_through_the_api(client, uuid)
    workflow = db.session.execute(db.select(Workflow).where(Workflow.uuid == uuid)).scalar_one()
    assert runtime_variables(workflow.variables) == {"api_key": VARIABLE_SECRET, "region": "eu"}
    db.session.commit()


def test_without_the_old_key_a_signed_webhook_answers_what_to_do(client, keyring):
    key_a = new_key()
    owner = make_user()
    keyring(key_a)
    uuid = _create(client, owner, make_workspace(owner))
    keyring(new_key())  # the old key is gone and not a fallback
    response, _ = _signed_call(client, uuid)
    assert response.status_code == 503  # the server must be fixed; senders retry 5xx
    message = response.json["message"]
    assert "webhook secret cannot be decrypted" in message and "SECRET_KEY_FALLBACKS" in message
    assert "set the webhook_secret again" in message
    keyring(new_key(), [key_a])  # the old key back as a fallback: the same call verifies
    _assert_readable_through_the_api(client, uuid)


def test_an_undecryptable_secret_variable_fails_the_run_saying_what_to_do(app, client, worker, keyring):
    owner = make_user()
    workspace = make_workspace(owner)
    saved = app.config["SECRET_KEY"]
    keyring(new_key())  # stored under a key that neither this app nor the worker knows
    nodes = [{"id": "start", "type": "manual"},
             {"id": "use", "type": "set", "parameters": {"fields": {"n": "{{ variables.api_key | length }}"}}}]
    created = client.post(WORKFLOWS, headers=headers_for(owner), json={
        "workspace_uuid": workspace.uuid, "name": "lost key", "nodes": nodes,
        "edges": [{"source": "start", "target": "use"}],
        "variables": {"api_key": {"secret": True, "value": VARIABLE_SECRET}}})
    assert created.status_code == 201, created.json
    keyring(saved)  # the worker's key (the same environment as this app)
    # the API still shows it masked, as every secret
    shown = client.get(f"{WORKFLOWS}/{created.json['data']['uuid']}", headers=headers_for(owner)).json["data"]
    assert shown["variables"] == {"api_key": {"secret": True, "value": "********"}}

    run = client.post(EXECUTIONS, headers=headers_for(owner), json={"workflow_uuid": created.json["data"]["uuid"]})
    assert run.status_code == 201, run.json

    def finished():
        data = client.get(f"{EXECUTIONS}/{run.json['data']['uuid']}", headers=headers_for(owner)).json["data"]
        return data if data["is_finished"] else None

    done = wait_for(finished, timeout=60, message="execution")
    assert done["status"] == "failed", done
    assert done["error"] == ("Cannot run: workflow variable 'api_key' cannot be decrypted with SECRET_KEY or "
                             "SECRET_KEY_FALLBACKS: add the SECRET_KEY it was written under to "
                             "SECRET_KEY_FALLBACKS, or re-enter the secret.")


def test_rotate_names_what_no_key_decrypts_and_exits_non_zero(app, client, keyring):
    key_a, lost = new_key(), new_key()
    owner = make_user()
    workspace = make_workspace(owner)
    keyring(key_a)
    readable = _create(client, owner, workspace)
    keyring(lost)
    unreadable = _create(client, owner, workspace)

    keyring(new_key(), [key_a])
    result = app.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert result.exit_code == 1, result.output
    assert "re-encrypted 2 under SECRET_KEY, 0 already under it, 2 undecryptable" in result.output
    assert f"workflow {unreadable} ('rotation'): webhook_secret" in result.output
    assert f"workflow {unreadable} ('rotation'): variables.api_key" in result.output
    assert readable not in result.output
    assert "Add the key they were stored under to SECRET_KEY_FALLBACKS" in result.output
    # the readable workflow was re-encrypted all the same
    key_b = app.config["SECRET_KEY"]
    keyring(key_b)
    _assert_readable_through_the_api(client, readable)

    # --dry-run counts and writes nothing
    keyring(new_key(), [key_b, lost])
    before = _stored(readable), _stored(unreadable)
    dry = app.test_cli_runner().invoke(args=["secrets", "rotate", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would re-encrypt 4 under SECRET_KEY, 0 already under it, 0 undecryptable" in dry.output
    assert (_stored(readable), _stored(unreadable)) == before
