"""An account's secret is stored encrypted and shown masked; after a model sync (worker), an ``llm``
node run (worker) and a generation (API) it is nowhere in clear: not in the instance directory
(SQLite file and WAL, the worker's log), Redis (every key, the event log streams included), the RQ
jobs' arguments, any API answer or the captured log. Rotating SECRET_KEY re-encrypts it and the
account still works."""
from __future__ import annotations

import logging
import secrets
from pathlib import Path

from rq.job import Job
from sqlalchemy import text

from athena.extensions import db
from athena.models import Account
from athena.redis_client import get_queue, get_redis
from tests.factories import headers_for, make_user, make_workspace
from tests.llm.support import account_body
from tests.nodes import clean_rq
from tests.nodes.test_llm_node import llm_workflow, wait_finished
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import wait_for

__all__ = ["clean_rq"]


def _redis_text() -> bytes:
    """Every key of the test database with its value, read by type (DUMP may compress strings)."""
    redis, out = get_redis(), []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key).decode()
        out.append(key)
        if kind == "string":
            out.append(redis.get(key) or b"")
        elif kind == "hash":
            out.extend(b"%s=%s" % item for item in redis.hgetall(key).items())
        elif kind == "list":
            out.extend(redis.lrange(key, 0, -1))
        elif kind == "set":
            out.extend(redis.smembers(key))
        elif kind == "zset":
            out.extend(redis.zrange(key, 0, -1))
        elif kind == "stream":
            out.extend(repr(entry).encode() for entry in redis.xrange(key))
        out.append(redis.dump(key) or b"")
    return b"\n".join(out)


def _job_arguments() -> str:
    queue, found = get_queue(), []
    registries = [queue.finished_job_registry, queue.failed_job_registry, queue.started_job_registry,
                  queue.scheduled_job_registry, queue.deferred_job_registry]
    ids = set(queue.job_ids) | {job_id for registry in registries for job_id in registry.get_job_ids()}
    for job in Job.fetch_many(list(ids), connection=queue.connection):
        if job is not None:
            found.append(f"{job.func_name} {job.args!r} {job.kwargs!r} {job.meta!r}")
    return "\n".join(found)


def _instance_files(tmp: Path) -> dict[str, bytes]:
    if db.engine.url.get_backend_name() == "sqlite":
        db.session.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
    return {str(path): path.read_bytes() for path in tmp.rglob("*") if path.is_file()}


def test_an_accounts_secret_is_nowhere_in_clear(app, client, worker, fake_openai: FakeOpenAI, test_settings,
                                               caplog):
    caplog.set_level(logging.DEBUG)
    secret = f"sk-nowhere-{secrets.token_hex(16)}"
    header_secret = f"hdr-{secrets.token_hex(12)}"
    fake_openai.valid_keys = {secret}
    user = make_user()
    workspace = make_workspace(user)
    headers = headers_for(user)
    answers: list[str] = []

    def call(method: str, url: str, **kwargs):
        response = client.open(url, method=method, headers=headers, **kwargs)
        answers.append(response.get_data(as_text=True))
        return response

    body = account_body(workspace.uuid, fake_openai.base_url, key=secret)
    body["credentials"]["extra_headers"] = {"X-Team": header_secret}
    created = call("POST", "/api/v1/accounts", json=body)
    assert created.status_code == 201, created.json
    account_uuid = created.json["data"]["uuid"]
    assert created.json["data"]["credentials"]["api_key"] == f"sk-…{secret[-4:]}"
    wait_for(lambda: call("GET", "/api/v1/large-language-models").json["meta"]["total"] == 4, timeout=60,
             message="the model sync\n" + worker.read_log()[-2000:])
    # an llm node run on the worker and a generation in the API, both with the account
    fake_openai.reply("node answer")
    fake_openai.reply_json({"name": "x", "description": "y", "nodes": [{"id": "start", "type": "manual"}],
                            "edges": []})
    flow = llm_workflow(client, headers, workspace.uuid, {"prompt": "Hi", "account_uuid": account_uuid})
    run = call("POST", "/api/v1/workflow-executions", json={"workflow_uuid": flow.json["data"]["uuid"]})
    done = wait_finished((client, headers, workspace.uuid), run.json["data"]["uuid"], worker)
    assert done["status"] == "completed", done
    generated = call("POST", "/api/v1/workflows/generate",
                     json={"workspace_uuid": workspace.uuid, "prompt": "Ping", "account_uuid": account_uuid})
    assert generated.status_code in (200, 201), generated.json
    assert all(r.headers["authorization"] == f"Bearer {secret}" for r in fake_openai.requests)
    assert all(r.headers["x-team"] == header_secret for r in fake_openai.requests)
    for url in ("/api/v1/accounts", f"/api/v1/accounts/{account_uuid}", "/api/v1/providers",
                f"/api/v1/workflow-executions/{run.json['data']['uuid']}?with=workflowExecutionData"):
        assert call("GET", url).status_code == 200
    call("PUT", f"/api/v1/accounts/{account_uuid}?verify=false", json={"name": "Renamed"})

    places: dict[str, bytes] = {**_instance_files(test_settings["tmp"]), "redis": _redis_text(),
                                "rq job arguments": _job_arguments().encode(),
                                "api answers": "\n".join(answers).encode(), "log": caplog.text.encode(),
                                "worker log": worker.read_log().encode()}
    assert any(name.endswith(".db") for name in places) or db.engine.url.get_backend_name() != "sqlite"
    for needle in (secret, header_secret):
        leaks = [name for name, data in places.items() if needle.encode() in data]
        assert not leaks, f"{needle[:6]}... found in clear in {leaks}"
    stored = db.session.execute(db.select(Account).where(Account.uuid == account_uuid)).scalar_one()
    assert stored.credentials["api_key"].startswith("enc:v1:")


def test_key_rotation_re_encrypts_and_the_account_still_works(app, client, fake_openai: FakeOpenAI):
    secret = f"sk-rotate-{secrets.token_hex(8)}"
    fake_openai.valid_keys = {secret}
    user = make_user()
    workspace = make_workspace(user)
    headers = headers_for(user)
    created = client.post("/api/v1/accounts", json=account_body(workspace.uuid, fake_openai.base_url, key=secret),
                          headers=headers)
    assert created.status_code == 201
    uuid = created.json["data"]["uuid"]
    before = dict(db.session.execute(db.select(Account).where(Account.uuid == uuid)).scalar_one().credentials)
    old_key, saved = app.config["SECRET_KEY"], (app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"])
    app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"] = secrets.token_urlsafe(48), [old_key]
    try:
        result = app.test_cli_runner().invoke(args=["secrets", "rotate"])
        assert result.exit_code == 0, result.output
        db.session.expire_all()
        after = db.session.execute(db.select(Account).where(Account.uuid == uuid)).scalar_one().credentials
        assert after["api_key"] != before["api_key"] and after["api_key"].startswith("enc:v1:")
        app.config["SECRET_KEY_FALLBACKS"] = []  # the old key is gone: only the new one reads it now
        shown = client.get(f"/api/v1/accounts/{uuid}", headers=headers).json["data"]
        assert shown["credentials"]["api_key"] == f"sk-…{secret[-4:]}"
        fake_openai.reply_json({"name": "x", "description": "y", "nodes": [{"id": "start", "type": "manual"}],
                                "edges": []})
        answer = client.post("/api/v1/workflows/generate", json={"workspace_uuid": workspace.uuid, "prompt": "Ping"},
                             headers=headers)
        assert answer.status_code == 200, answer.json
        assert fake_openai.last.headers["authorization"] == f"Bearer {secret}"
    finally:
        app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"] = saved
