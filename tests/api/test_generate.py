"""POST /api/v1/workflows/generate against the fake OpenAI-compatible server (real protocol, real
``openai`` client): JSON and multipart, streaming (SSE) and not, repair rounds, auto_create,
provider errors, client disconnects, and a generated workflow run on the real worker."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import requests

from athena.engine import registry
from athena.extensions import db
from athena.models import Workflow
from tests.factories import headers_for, make_user, make_workspace
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import free_port, wait_for

URL = "/api/v1/workflows/generate"
PROMPT = "When I start it by hand with a name, greet that person."
VALID = {"name": "Greeter", "description": "Greets the caller",
         "nodes": [{"id": "start", "type": "manual", "name": "Start", "parameters": {}},
                   {"id": "greet", "type": "set", "name": "Greet",
                    "parameters": {"fields": {"greeting": "Hello {{ trigger.name }}"}}}],
         "edges": [{"source": "start", "target": "greet", "source_handle": "main", "target_handle": "main"}]}
# "set" without its required "fields", wired from a handle "manual" does not have.
INVALID = {"name": "Broken", "description": "",
           "nodes": [{"id": "start", "type": "manual", "parameters": {}},
                     {"id": "greet", "type": "set", "parameters": {}}],
           "edges": [{"source": "start", "target": "greet", "source_handle": "yes"}]}


@pytest.fixture
def llm(fake_openai_app: FakeOpenAI) -> FakeOpenAI:
    """The fake server, with the in-process app pointed at it (see tests/support/fake_openai.py)."""
    return fake_openai_app


@pytest.fixture
def people():
    owner, viewer, stranger = make_user(), make_user(), make_user()
    workspace = make_workspace(owner, members={viewer: "viewer"})
    other = make_workspace(stranger)
    return {"owner": headers_for(owner), "viewer": headers_for(viewer), "workspace": workspace.uuid,
            "other": other.uuid}


def body(people: dict, **extra: Any) -> dict[str, Any]:
    return {"workspace_uuid": people["workspace"], "prompt": PROMPT, **extra}


def parse_sse(text: str) -> tuple[list[tuple[str, Any]], int]:
    """``([(event, data), ...], heartbeat_comments)`` of an event stream."""
    events, heartbeats = [], 0
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            heartbeats += 1
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events, heartbeats


def names(events: list[tuple[str, Any]]) -> list[str]:
    """Event names with runs of ``token`` collapsed to one."""
    out: list[str] = []
    for name, _ in events:
        if not (name == "token" and out and out[-1] == "token"):
            out.append(name)
    return out


def test_valid_first_answer(client, people, llm: FakeOpenAI):
    llm.reply_json(VALID)
    response = client.post(URL, json=body(people), headers=people["owner"])
    assert response.status_code == 200, response.json
    assert isinstance(response.json["data"], str)
    workflow = json.loads(response.json["data"])
    assert workflow["name"] == "Greeter" and workflow["description"] == "Greets the caller"
    positions = {n["id"]: n["position"] for n in workflow["nodes"]}
    assert positions == {"start": {"x": 0, "y": 0}, "greet": {"x": 300, "y": 0}}  # laid out by depth
    assert workflow["edges"][0]["id"] and workflow["edges"][0]["source"] == "start"
    sent = llm.last
    assert sent.model == "gpt-4.1-mini" and not sent.stream
    assert sent.response_format["type"] == "json_schema"
    assert sent.response_format["json_schema"]["name"] == "workflow"
    system = sent.messages[0]
    assert system["role"] == "system"
    for node_type in registry.types():  # the live registry, so new node types need no generator change
        assert f"### {node_type.type}" in system["content"]
    for syntax in ("{{ trigger.body.", "{{ nodes.", "{{ variables."):
        assert syntax in system["content"]
    assert sent.messages[1:] == [{"role": "user", "content": PROMPT}]
    assert Workflow.query.count() == 0  # nothing saved without auto_create


def test_multipart_form_and_model_choice(client, people, llm: FakeOpenAI):
    llm.reply_json(VALID)
    form = {"workspace_uuid": people["workspace"], "prompt": PROMPT, "stream": "", "auto_create": "",
            "visibility": "", "model": "gpt-custom"}
    response = client.post(URL, data=form, headers=people["owner"], content_type="multipart/form-data")
    assert response.status_code == 200, response.json
    assert json.loads(response.json["data"])["name"] == "Greeter"
    assert llm.last.model == "gpt-custom"


def test_invalid_answer_is_repaired(client, people, llm: FakeOpenAI):
    llm.reply_json(INVALID)
    llm.reply_json(VALID)
    response = client.post(URL, json=body(people), headers=people["owner"])
    assert response.status_code == 200, response.json
    first, repair = llm.wait_for_requests(2)
    assert len(repair.messages) == len(first.messages) + 2
    assert repair.messages[-2] == {"role": "assistant", "content": json.dumps(INVALID)}
    feedback = repair.messages[-1]["content"]
    assert repair.messages[-1]["role"] == "user"
    assert "node 'greet': parameter 'fields': Missing data for required field." in feedback
    assert "has no output handle 'yes'" in feedback


def test_never_valid_is_422_with_errors_and_candidate(client, people, llm: FakeOpenAI):
    for _ in range(3):
        llm.reply_json(INVALID)
    response = client.post(URL, json=body(people), headers=people["owner"])
    assert response.status_code == 422, response.json
    assert len(llm.requests) == 3
    assert "nodes.greet.parameters.fields" in response.json["errors"]
    assert response.json["candidate"]["nodes"][1]["id"] == "greet"
    assert "valid workflow" in response.json["message"]


def test_not_json_at_all_is_repaired(client, people, llm: FakeOpenAI):
    llm.reply("Sure! Here's a workflow: nodes...")
    llm.reply_json(VALID)
    response = client.post(URL, json=body(people), headers=people["owner"])
    assert response.status_code == 200, response.json
    assert "not valid JSON" in llm.requests[1].messages[-1]["content"]


def test_auto_create_returns_201_workflow(client, people, llm: FakeOpenAI):
    llm.reply_json(VALID)
    response = client.post(URL, json=body(people, auto_create=True, visibility="private"), headers=people["owner"])
    assert response.status_code == 201, response.json
    data = response.json["data"]
    assert data["name"] == "Greeter" and data["visibility"] == "private" and data["is_owner"] is True
    assert [n["id"] for n in data["nodes"]] == ["start", "greet"]
    fetched = client.get(f"/api/v1/workflows/{data['uuid']}", headers=people["owner"])
    assert fetched.status_code == 200 and fetched.json["data"]["nodes"][1]["position"] == {"x": 300, "y": 0}


def test_stream_event_order_with_repair_and_auto_create(client, people, llm: FakeOpenAI):
    llm.reply_json(INVALID, chunk_size=7)
    llm.reply_json(VALID, chunk_size=7)
    response = client.post(URL, json=body(people, stream=True, auto_create=True), headers=people["owner"])
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events, _ = parse_sse(response.get_data(as_text=True))
    assert names(events) == ["start", "token", "validation", "repair", "token", "validation", "workflow",
                             "created", "done"]
    by_round: dict[int, str] = {}
    for name, data in events:
        if name == "token":
            by_round[data["round"]] = by_round.get(data["round"], "") + data["text"]
    assert by_round == {0: json.dumps(INVALID), 1: json.dumps(VALID)}
    validations = [data for name, data in events if name == "validation"]
    assert [v["valid"] for v in validations] == [False, True]
    assert "nodes.greet.parameters.fields" in validations[0]["errors"]
    assert dict(events)["repair"]["errors"] == validations[0]["errors"]
    assert dict(events)["workflow"]["workflow"]["name"] == "Greeter"
    created = dict(events)["created"]["data"]
    assert db.session.get(Workflow, created["id"]).uuid == created["uuid"]
    assert events[-1] == ("done", {"ok": True})
    assert all(r.stream for r in llm.requests)


def test_stream_never_valid_ends_with_error(client, people, llm: FakeOpenAI):
    for _ in range(3):
        llm.reply_json(INVALID)
    response = client.post(URL, json=body(people, stream=True), headers=people["owner"])
    events, _ = parse_sse(response.get_data(as_text=True))
    assert names(events)[-2:] == ["error", "done"]
    error = dict(events)["error"]
    assert error["status"] == 422 and error["candidate"]["name"] == "Broken" and error["errors"]
    assert events[-1] == ("done", {"ok": False})


def test_stream_sends_heartbeats_while_the_model_is_slow(app, client, people, llm: FakeOpenAI):
    text = json.dumps(VALID)
    llm.reply(text, chunks=[text[:10], text[10:]], delay=0.2)
    app.config["GENERATE_HEARTBEAT_SECONDS"] = 0.01
    try:
        response = client.post(URL, json=body(people, stream=True), headers=people["owner"])
        events, heartbeats = parse_sse(response.get_data(as_text=True))
    finally:
        del app.config["GENERATE_HEARTBEAT_SECONDS"]
    assert heartbeats > 0
    assert names(events) == ["start", "token", "validation", "workflow", "done"]


def test_client_disconnect_stops_reading_the_model(live_server, people, llm: FakeOpenAI):
    llm.reply(chunks=['{"name": "x"'] + [" " for _ in range(3000)] + ["}"], delay=0.01)
    with requests.Session() as session:
        response = session.post(live_server.url + URL, json=body(people, stream=True), headers=people["owner"],
                                stream=True, timeout=60)
        assert response.status_code == 200
        for line in response.iter_lines(decode_unicode=True):
            if line == "event: token":
                break
        response.close()
    record = llm.wait_finished(llm.wait_for_requests(1)[0], timeout=60)
    assert record.disconnected
    assert record.chunks_sent < record.chunks_scripted


def test_no_api_key_is_503(app, client, people, llm: FakeOpenAI):
    app.config["OPENAI_API_KEY"], app.config["OPENAI_BASE_URL"] = None, None
    for stream in (False, True):
        response = client.post(URL, json=body(people, stream=stream), headers=people["owner"])
        assert response.status_code == 503, response.json
        assert "OPENAI_API_KEY" in response.json["message"] and "OPENAI_BASE_URL" in response.json["message"]
    assert llm.requests == []


def test_unreachable_model_server_is_503(app, client, people, llm: FakeOpenAI):
    app.config["OPENAI_BASE_URL"] = f"http://127.0.0.1:{free_port()}/v1"
    response = client.post(URL, json=body(people), headers=people["owner"])
    assert response.status_code == 503
    assert "unreachable" in response.json["message"] and "OPENAI_BASE_URL" in response.json["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_rate_limit_is_passed_on(client, people, llm: FakeOpenAI, stream: bool):
    llm.reply_error(429, "Rate limit reached for gpt-4.1-mini", headers={"retry-after": "20"})
    response = client.post(URL, json=body(people, stream=stream), headers=people["owner"])
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "20"
    assert "Rate limit reached" in response.json["message"]


def test_provider_failure_is_502(client, people, llm: FakeOpenAI):
    llm.reply_error(500, "The server had an error while processing your request.")
    response = client.post(URL, json=body(people), headers=people["owner"])
    assert response.status_code == 502
    assert "HTTP 500" in response.json["message"]


def test_access_and_validation(client, people, llm: FakeOpenAI):
    assert client.post(URL, json=body(people)).status_code == 401
    assert client.post(URL, json=body(people), headers=people["viewer"]).status_code == 403
    other = client.post(URL, json={**body(people), "workspace_uuid": people["other"]}, headers=people["owner"])
    assert other.status_code == 404
    for bad, field in (({"prompt": ""}, "prompt"), ({"prompt": "x" * 8001}, "prompt"), ({"prompt": "   "}, "prompt"),
                       ({"visibility": "everyone"}, "visibility"), ({"surprise": 1}, "surprise")):
        response = client.post(URL, json=body(people, **bad), headers=people["owner"])
        assert response.status_code == 422 and field in response.json["errors"], (bad, response.json)
    missing = client.post(URL, json={"workspace_uuid": people["workspace"]}, headers=people["owner"])
    assert missing.status_code == 422 and "prompt" in missing.json["errors"]
    assert llm.requests == []


def test_generated_workflow_runs_on_the_worker(client, people, llm: FakeOpenAI, worker):
    llm.reply_json(copy.deepcopy(VALID))
    created = client.post(URL, json=body(people, auto_create=True), headers=people["owner"])
    assert created.status_code == 201, created.json
    run = client.post("/api/v1/workflow-executions", json={"workflow_uuid": created.json["data"]["uuid"],
                                                           "input": {"name": "Ada"}}, headers=people["owner"])
    assert run.status_code == 201, run.json
    uuid = run.json["data"]["uuid"]

    def finished():
        data = client.get(f"/api/v1/workflow-executions/{uuid}", headers=people["owner"]).json["data"]
        return data if data["is_finished"] else None

    data = wait_for(finished, timeout=60, message="execution to finish:\n" + worker.read_log()[-3000:])
    assert data["status"] == "completed", data
    assert data["output"] == {"greet": {"greeting": "Hello Ada"}}
