"""The wire schema (athena/runs/wire.py, docs/events.md): every event real runs log conforms to
it, every event it declares is produced by those runs, and the docs describe each one."""
from __future__ import annotations

import re
from pathlib import Path

from athena.runs import wire
from athena.runs.eventlog import event_log_for_app, stream_key, workspace_stream_key
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes import clean_rq, edge, manual, node, set_node, wait_status
from tests.support.fake_openai import FakeOpenAI

__all__ = ["clean_rq"]  # the autouse fixture
API = "/api/v1/workflow-executions"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def _every_kind_of_event_graph() -> tuple[list[dict], list[dict]]:
    """start → set → for_each (2 items, a set body) → streamed llm → approval → set."""
    nodes = [manual(), set_node("prepare", {"numbers": [1, 2]}),
             node("each", "for_each", {"items": "{{ input.numbers }}"}), set_node("double", {"n": "{{ item * 2 }}"}),
             node("ask", "llm", {"prompt": "Say hi", "stream": True}),
             node("review", "approval", {"message": "Ship it?"}), set_node("yes", {"shipped": True})]
    edges = [edge("start", "prepare"), edge("prepare", "each"), edge("each", "double", "item"),
             edge("each", "ask", "done"), edge("ask", "review"), edge("review", "yes", "approved")]
    return nodes, edges


def test_every_event_of_a_real_run_conforms_to_the_schema(client, worker, fake_openai: FakeOpenAI):
    fake_openai.reply("hello from the model", chunk_size=4)
    owner = make_user()
    workspace = make_workspace(owner)
    headers = headers_for(owner)
    workflow = make_workflow(workspace, owner, *_every_kind_of_event_graph())
    created = client.post(API, json={"workflow_uuid": workflow.uuid}, headers=headers)
    assert created.status_code == 201, created.json
    uuid = created.json["data"]["uuid"]
    wait_status(client, headers, uuid, "paused", worker)
    [approval] = client.get(f"{API}/{uuid}/approvals", headers=headers).json["data"]
    decided = client.post(f"{API}/{uuid}/approvals/{approval['id']}/approve", json={"comment": "ok"}, headers=headers)
    assert decided.status_code == 200, decided.json
    assert wait_status(client, headers, uuid, ("completed", "failed", "cancelled"), worker)["status"] == "completed"

    log = event_log_for_app()
    events = log.read_after(stream_key(uuid), 0, count=10_000)
    feed = [e for e in log.read_after(workspace_stream_key(workspace.uuid), 0, count=10_000, workspace=True)
            if e["execution_uuid"] == uuid]
    problems = [problem for event in events + feed for problem in wire.problems(event)]
    assert problems == []
    assert {e["event"] for e in events} == set(wire.SCHEMA)  # this run produces every declared event
    assert {e["event"] for e in feed} == set(wire.WORKSPACE_EVENTS)
    assert "".join(e["token"] for e in events if e["event"] == wire.LLM_TOKEN) == "hello from the model"


def test_an_inline_run_logs_the_same_schema(client):
    owner = make_user()
    headers = headers_for(owner)
    nodes = [node("start", "webhook"), set_node("a", {"x": "{{ trigger.body.x }}"})]
    workflow = make_workflow(make_workspace(owner), owner, nodes, [edge("start", "a")])
    answer = client.post(f"/api/v1/workflows/{workflow.uuid}/webhook?wait=true", json={"x": 1}, headers=headers)
    assert answer.status_code == 200, answer.json
    events = event_log_for_app().read_after(stream_key(answer.json["data"]["uuid"]), 0)
    assert [problem for event in events for problem in wire.problems(event)] == []
    assert [e["event"] for e in events] == ["execution.status", "execution.status", "node.started", "node.finished",
                                            "node.started", "node.finished", "execution.status", "execution.finished"]


def test_the_checker_refuses_what_does_not_conform():
    good = {"event": "node.progress", "ts": "t", "execution_uuid": "e", "workspace_uuid": "w", "workflow_uuid": "f",
            "node_id": "n", "index": 1, "length": 2, "processed": 1, "errors": 0}
    assert wire.problems(good) == []
    assert wire.problems({**good, "index": "1"}) == ["node.progress: field 'index' is str"]
    assert wire.problems({**good, "extra": 1}) == ["node.progress: undeclared field 'extra'"]
    assert wire.problems({k: v for k, v in good.items() if k != "errors"}) == ["node.progress: field 'errors' missing"]
    assert wire.problems({**good, "event": "node.exploded"}) == ["unknown event 'node.exploded'"]


def test_the_name_is_read_from_the_encoded_form_only():
    raw = wire.encode(wire.NODE_FINISHED, {"output": {"event": "execution.finished"}}, ts="t",
                      execution_uuid="e", workspace_uuid="w").encode()
    assert wire.name_of(raw) == wire.NODE_FINISHED
    assert wire.name_of(b'{"ts":"t","event":"node.finished"}') is None


def test_docs_events_md_describes_every_event_and_field():
    text = DOCS.read_text()
    for name, spec in wire.SCHEMA.items():
        section = re.search(rf"^### `{re.escape(name)}`\n(.*?)(?=^### |\Z)", text, re.S | re.M)
        assert section, f"docs/events.md has no section for {name}"
        for field in [*spec.required, *spec.optional]:
            assert f"`{field}`" in section.group(1), f"docs/events.md: {name} does not describe {field}"
    for field in wire.ENVELOPE:
        assert f"`{field}`" in text
