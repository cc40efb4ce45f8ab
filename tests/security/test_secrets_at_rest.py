"""Issue 6 item 8: a dump of the database holds no token, password or workflow secret in clear."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from athena.extensions import db
from tests.support.servers import wait_for

PASSWORD = "a-very-memorable-password"
WEBHOOK_SECRET = "whsec-0123456789abcdef-xyz"
VARIABLE_SECRET = "sk-live-super-secret-value"


def _dump() -> str:
    """Every row of every table, as text (what a logical dump would contain)."""
    lines = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()).all():
            lines.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(lines)


def _raw_sqlite_bytes() -> bytes:
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or not url.database:
        return b""
    db.session.execute(text("PRAGMA wal_checkpoint(FULL)"))
    path = Path(url.database)
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_database_dump_has_no_clear_secrets(app, client, worker):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "create", "owner@example.com", "--password", PASSWORD,
                               "--workspace", "Ops"]).exit_code == 0
    app_token = runner.invoke(args=["tokens", "create", "owner@example.com"]).output.strip().splitlines()[-1]
    signed = client.post("/api/v1/auth/sign-in", json={"email": "owner@example.com", "password": PASSWORD})
    session_token = signed.json["data"]["token"]
    headers = {"Authorization": f"Bearer {session_token}"}
    workspace_uuid = client.get("/api/v1/workspaces", headers=headers).json["data"][0]["uuid"]
    created = client.post("/api/v1/workflows", headers=headers, json={
        "workspace_uuid": workspace_uuid, "name": "secrets", "webhook_secret": WEBHOOK_SECRET,
        "variables": {"api_key": {"secret": True, "value": VARIABLE_SECRET}, "region": "eu"},
        "nodes": [{"id": "start", "type": "manual"},
                  {"id": "use", "type": "set", "parameters": {"fields": {"key_length": "{{ variables.api_key | length }}"}}}],
        "edges": [{"source": "start", "target": "use"}]})
    assert created.status_code == 201, created.json
    # the secret is usable at run time (decrypted for expressions) ...
    run = client.post("/api/v1/workflow-executions", headers={"X-Multiplai-Authorization": app_token},
                      json={"workflow_uuid": created.json["data"]["uuid"]})
    assert run.status_code == 201, run.json
    uuid = run.json["data"]["uuid"]

    def finished():
        data = client.get(f"/api/v1/workflow-executions/{uuid}", headers=headers).json["data"]
        return data if data["is_finished"] else None

    done = wait_for(finished, timeout=60, message="execution")
    assert done["status"] == "completed" and done["output"] == {"use": {"key_length": len(VARIABLE_SECRET)}}

    # ... and nowhere in the database in clear.
    dump = _dump()
    raw = _raw_sqlite_bytes()
    for secret in (PASSWORD, WEBHOOK_SECRET, VARIABLE_SECRET, app_token, session_token):
        assert secret not in dump, f"{secret[:6]}... found in the dump"
        assert secret.encode() not in raw, f"{secret[:6]}... found in the SQLite file"
    assert "enc:v1:" in dump  # the encrypted forms are there
