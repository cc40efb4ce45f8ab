"""``python -m athena.cli watch`` prints the workflow's final output when the execution finishes
(not only with ``--json``): a real subprocess, the live server, a real worker running the run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.executions.test_webhook import hook_url, stored, wait_finished
from tests.factories import make_user, make_workflow, make_workspace, token_for
from tests.nodes import API, clean_rq, wait_status
from tests.realtime.support import SAFETY_TIMEOUT
from tests.realtime.test_watch_cli import Watch

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["clean_rq"]  # autouse: no approval timer or tick outlives a test


@pytest.fixture
def owner():
    user = make_user()
    return user, make_workspace(user), token_for(user)


def _workflow(owner, last: dict):
    user, workspace, _ = owner
    workflow = make_workflow(workspace, user, nodes=[{"id": "hook", "type": "webhook", "parameters": {}}, last],
                             edges=[{"id": "e1", "source": "hook", "target": last["id"]}])
    return workflow


def _trigger(client, workflow, token: str, body: dict) -> str:
    response = client.post(hook_url(workflow), json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.json  # without wait: the worker runs it
    return response.json["data"]["uuid"]


def _watch(live_server, uuid: str, token: str, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ATHENA_TOKEN", "ATHENA_URL")}
    return subprocess.run([sys.executable, "-m", "athena.cli", "watch", uuid, "--url", live_server.url,
                           "--token", token, *extra], cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"},
                          capture_output=True, text=True, timeout=SAFETY_TIMEOUT)


def test_watch_prints_the_final_output_when_the_execution_finishes(client, live_server, worker, owner):
    greet = {"id": "greet", "type": "set", "parameters": {"fields": {"message": "Hello {{ trigger.body.name }}"}}}
    workflow = _workflow(owner, greet)
    token = owner[2]
    # connecting before, during or after the run: the same lines (the log is replayed from the start)
    uuid = _trigger(client, workflow, token, {"name": "Ada"})
    watch = Watch(uuid, "--url", live_server.url, "--token", token)
    try:
        assert watch.wait() == 0, watch.process.stderr.read()
    finally:
        watch.stop()
    finished = [i for i, line in enumerate(watch.lines) if line.split()[1:2] == ["execution.finished"]]
    assert finished, watch.lines
    assert watch.lines[finished[0]].endswith("execution.finished status=completed")
    assert watch.lines[finished[0] + 1:] == ['output: {"greet": {"message": "Hello Ada"}}'], watch.lines
    assert stored(uuid).output == {"greet": {"message": "Hello Ada"}}


def test_watch_after_the_end_prints_the_output_and_the_error_of_a_failed_run(client, live_server, worker, owner):
    boom = {"id": "boom", "type": "stop_and_error", "parameters": {"message": "no {{ trigger.body.name }}"}}
    workflow = _workflow(owner, boom)
    uuid = _trigger(client, workflow, owner[2], {"name": "Bo"})
    assert wait_finished(uuid, worker)["status"] == "failed"

    done = _watch(live_server, uuid, owner[2])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-3].endswith("execution.finished status=failed"), lines
    output = json.dumps(stored(uuid).output)  # what the failed run left ({}: no node finished after the trigger)
    assert lines[-2:] == [f"output: {output}", "error: node 'boom': no Bo"], lines


def test_an_output_too_large_for_the_event_is_read_from_the_api(client, live_server, worker, owner):
    """watch connects while the run waits for an approval (its snapshot has no output yet); the run
    then ends with an output over the events' 64 KiB: ``execution.finished`` says
    ``output_truncated``, and watch reads the output from ``GET /api/v1/workflow-executions/<uuid>``."""
    user, workspace, token = owner
    headers = {"Authorization": f"Bearer {token}"}
    workflow = make_workflow(workspace, user, nodes=[
        {"id": "hook", "type": "webhook", "parameters": {}},
        {"id": "review", "type": "approval", "parameters": {"message": "Go?"}},
        {"id": "big", "type": "set", "parameters": {"fields": {"blob": "{{ trigger.body.blob }}"}}},
    ], edges=[{"id": "e1", "source": "hook", "target": "review"},
              {"id": "e2", "source": "review", "target": "big", "source_handle": "approved"}])
    blob = "x" * (70 * 1024)
    uuid = _trigger(client, workflow, token, {"blob": blob})
    wait_status(client, headers, uuid, "paused", worker)
    [approval] = client.get(f"{API}/{uuid}/approvals", headers=headers).json["data"]

    watch = Watch(uuid, "--url", live_server.url, "--token", token)
    try:
        assert "status=paused" in watch.wait_lines(1)[0], (watch.lines, watch.process.stderr)
        response = client.post(f"{API}/{uuid}/approvals/{approval['id']}/approve", json={}, headers=headers)
        assert response.status_code == 200, response.json
        assert watch.wait() == 0, watch.process.stderr.read()
    finally:
        watch.stop()
    assert wait_finished(uuid, worker)["output_truncated"] is True
    assert "output:" in watch.lines, watch.lines[-3:]
    printed = json.loads("\n".join(watch.lines[watch.lines.index("output:") + 1:]))
    assert printed == stored(uuid).output == {"big": {"blob": blob}}


def test_json_mode_prints_the_raw_messages_only(client, live_server, worker, owner):
    greet = {"id": "greet", "type": "set", "parameters": {"fields": {"n": "{{ trigger.body.n }}"}}}
    workflow = _workflow(owner, greet)
    uuid = _trigger(client, workflow, owner[2], {"n": 1})
    assert wait_finished(uuid, worker)["status"] == "completed"
    done = _watch(live_server, uuid, owner[2], "--json")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]  # every line is a message
    assert messages[-1]["event"] == "execution.finished" and messages[-1]["output"] == {"greet": {"n": 1}}
