"""The ``llm`` node: through the real API and RQ worker against the fake OpenAI-compatible server
(which speaks the real protocol to the real ``openai`` client)."""
from __future__ import annotations

from typing import Any

import pytest

from athena.engine import LlmTokens, LlmUsage
from athena.runs.eventlog import event_log_for_app, stream_key
from tests.engine._engine_helpers import assert_finished, execute, finished, node
from tests.factories import headers_for, make_user, make_workspace
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import wait_for

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
          "required": ["city", "temp"], "additionalProperties": False}


def llm_workflow(client, headers: dict[str, str], workspace_uuid: str, parameters: dict[str, Any],
                 settings: dict[str, Any] | None = None, extra_nodes: list[dict] = (),
                 extra_edges: list[dict] = ()):
    ask = {"id": "ask", "type": "llm", "parameters": parameters}
    if settings:
        ask["settings"] = settings
    body = {"workspace_uuid": workspace_uuid, "name": "LLM",
            "nodes": [{"id": "start", "type": "manual"}, ask, *extra_nodes],
            "edges": [{"id": "e1", "source": "start", "target": "ask"}, *extra_edges]}
    return client.post("/api/v1/workflows", json=body, headers=headers)


@pytest.fixture
def setup(client):
    user = make_user()
    workspace = make_workspace(user)
    return client, headers_for(user), workspace.uuid


def start(setup, parameters: dict[str, Any], inputs: Any = None, **kwargs: Any) -> str:
    client, headers, workspace_uuid = setup
    created = llm_workflow(client, headers, workspace_uuid, parameters, **kwargs)
    assert created.status_code == 201, created.json
    run = client.post("/api/v1/workflow-executions",
                      json={"workflow_uuid": created.json["data"]["uuid"], "input": inputs}, headers=headers)
    assert run.status_code == 201, run.json
    return run.json["data"]["uuid"]


def wait_finished(setup, uuid: str, worker) -> dict[str, Any]:
    client, headers, _ = setup

    def done():
        body = client.get(f"/api/v1/workflow-executions/{uuid}?with=workflowExecutionData", headers=headers).json
        return body["data"] if body["data"]["is_finished"] else None

    return wait_for(done, timeout=60, message="execution to finish:\n" + worker.read_log()[-3000:])


def entries(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["node_id"]: e for e in data["workflow_execution_data"][0]["workflow_data"]}


def events(uuid: str, name: str | None = None) -> list[dict[str, Any]]:
    found = event_log_for_app().read_after(stream_key(uuid), 0, count=100_000)
    return [e for e in found if name is None or e["event"] == name]


def test_non_streaming_text(setup, worker, fake_openai: FakeOpenAI):
    fake_openai.reply("Hello, Ada!", usage={"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15})
    uuid = start(setup, {"prompt": "Greet {{ trigger.name }}", "system": "Be brief.", "model": "gpt-test",
                         "temperature": 0.2, "max_tokens": 50, "stream": False}, {"name": "Ada"})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "completed", data
    output = entries(data)["ask"]["output"]
    assert output == {"text": "Hello, Ada!", "model": "gpt-test", "finish_reason": "stop",
                      "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15, "cost": None}}
    sent = fake_openai.last
    assert sent.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Greet Ada"}]
    assert sent.model == "gpt-test" and not sent.stream and sent.response_format is None
    assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] == 50
    assert sent.headers["authorization"] == "Bearer test-key"
    assert events(uuid, "llm.token") == []
    assert [e["usage"] for e in events(uuid, "llm.usage")] == [output["usage"]]


def test_streaming_text_emits_tokens_in_order(setup, worker, fake_openai: FakeOpenAI):
    text = "The quick brown fox jumps over the lazy dog. " * 5
    fake_openai.reply(text, chunk_size=3)
    uuid = start(setup, {"prompt": "Tell me about foxes"})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "completed", data
    output = entries(data)["ask"]["output"]
    assert output["text"] == text
    assert output["model"] == "gpt-4.1-mini"  # the server default
    assert output["usage"]["completion_tokens"] == len(range(0, len(text), 3))
    assert output["usage"]["total_tokens"] == output["usage"]["prompt_tokens"] + output["usage"]["completion_tokens"]
    sent = fake_openai.last
    assert sent.stream and sent.body["stream_options"] == {"include_usage": True}
    assert sent.messages == [{"role": "user", "content": "Tell me about foxes"}]
    tokens = events(uuid, "llm.token")
    assert tokens and all(t["node_id"] == "ask" for t in tokens)
    assert "".join(t["token"] for t in tokens) == text
    seqs = [t["seq"] for t in tokens]
    assert seqs == sorted(seqs)
    log = events(uuid)
    names = [e["event"] for e in log]
    first_token, usage_at = names.index("llm.token"), names.index("llm.usage")
    finished_at = next(i for i, e in enumerate(log) if e["event"] == "node.finished" and e["node_id"] == "ask")
    assert first_token < usage_at < finished_at
    assert log[usage_at]["usage"] == output["usage"]


@pytest.mark.parametrize("stream", [True, False])
def test_json_schema_output_is_parsed(setup, worker, fake_openai: FakeOpenAI, stream: bool):
    fake_openai.reply_json({"city": "Paris", "temp": 21.5})
    uuid = start(setup, {"prompt": "Weather?", "json_schema": SCHEMA, "stream": stream})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "completed", data
    output = entries(data)["ask"]["output"]
    assert output["json"] == {"city": "Paris", "temp": 21.5}
    assert fake_openai.last.response_format == {"type": "json_schema",
                                                "json_schema": {"name": "output", "schema": SCHEMA}}


def test_json_mode_with_invalid_json_fails_the_node(setup, worker, fake_openai: FakeOpenAI):
    fake_openai.reply("Sure! Here is your JSON: {oops")
    uuid = start(setup, {"prompt": "JSON please", "json_mode": True, "stream": False})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "failed"
    assert fake_openai.last.response_format == {"type": "json_object"}
    assert "not valid JSON" in entries(data)["ask"]["error"]


@pytest.mark.parametrize(("status", "message"), [(429, "Rate limit reached for gpt-4.1-mini"),
                                                  (500, "The server had an error")])
def test_provider_error_fails_the_node(setup, worker, fake_openai: FakeOpenAI, status: int, message: str):
    fake_openai.reply_error(status, message, headers={"retry-after": "3"} if status == 429 else {})
    uuid = start(setup, {"prompt": "Hi"})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "failed"
    error = entries(data)["ask"]["error"]
    assert f"HTTP {status}" in error and message in error
    assert f"node 'ask': LLM provider returned HTTP {status}" in data["error"]
    if status == 429:
        assert "retry after 3s" in error


def test_rate_limit_is_retryable(setup, worker, fake_openai: FakeOpenAI):
    fake_openai.reply_error(429, "slow down")
    fake_openai.reply("second time lucky")
    uuid = start(setup, {"prompt": "Hi"}, settings={"retry": {"max_attempts": 2, "backoff": 0}})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "completed", data
    assert entries(data)["ask"]["output"]["text"] == "second time lucky"
    assert entries(data)["ask"]["attempts"] == 2


def test_on_error_continue_routes_to_error_handle(setup, worker, fake_openai: FakeOpenAI):
    fake_openai.reply_error(500, "boom")
    fallback = {"id": "fallback", "type": "set", "parameters": {"fields": {"why": "{{ input.error }}"}}}
    happy = {"id": "happy", "type": "set", "parameters": {"fields": {"ok": True}}}
    uuid = start(setup, {"prompt": "Hi"}, settings={"on_error": "continue"}, extra_nodes=[fallback, happy],
                 extra_edges=[{"id": "e2", "source": "ask", "target": "fallback", "source_handle": "error"},
                              {"id": "e3", "source": "ask", "target": "happy"}])
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "completed", data
    by_id = entries(data)
    assert by_id["ask"]["status"] == "error" and by_id["ask"]["handle"] == "error"
    assert "HTTP 500: boom" in by_id["fallback"]["output"]["why"]
    assert by_id["happy"]["status"] == "skipped"


def test_stop_mid_stream_closes_the_stream(setup, worker, fake_openai: FakeOpenAI):
    client, headers, _ = setup
    fake_openai.reply(chunks=[f"w{i} " for i in range(2000)], delay=0.02)
    uuid = start(setup, {"prompt": "Write a long story"})
    wait_for(lambda: events(uuid, "llm.token"), timeout=60, message="the first llm.token\n" + worker.read_log()[-3000:])
    stopped = client.post(f"/api/v1/workflow-executions/{uuid}/stop", headers=headers)
    assert stopped.status_code == 200, stopped.json
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "cancelled"
    record = fake_openai.wait_finished(fake_openai.last)
    assert record.disconnected
    assert record.chunks_sent < record.chunks_scripted
    assert "llm.usage" not in [e["event"] for e in events(uuid)]
    wait_for(lambda: "execution.finished" in [e["event"] for e in events(uuid)], message="execution.finished")
    assert events(uuid, "execution.finished")[-1]["status"] == "cancelled"


@pytest.mark.parametrize(("parameters", "field"), [
    ({"prompt": "Hi", "temperature": 5}, "nodes.ask.parameters.temperature"),
    ({"system": "no prompt"}, "nodes.ask.parameters.prompt"),
    ({"prompt": "Hi", "max_tokens": 0}, "nodes.ask.parameters.max_tokens"),
    ({"prompt": "Hi", "json_mode": True, "json_schema": SCHEMA}, "nodes.ask.parameters.json_mode"),
    ({"prompt": "Hi", "unknown": 1}, "nodes.ask.parameters.unknown"),
])
def test_bad_parameters_are_rejected_at_write(setup, parameters: dict, field: str):
    client, headers, workspace_uuid = setup
    response = llm_workflow(client, headers, workspace_uuid, parameters)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]


def _settings(**overrides: Any) -> dict[str, Any]:
    return {"settings": {"openai_api_key": None, "openai_base_url": None, "llm_default_model": "gpt-4.1-mini",
                         "llm_timeout": 30.0, **overrides}}


def test_missing_api_key_fails_with_a_clear_message():
    nodes = [node("start", "manual"), node("ask", "llm", prompt="Hi")]
    events_, _ = execute(nodes, [{"source": "start", "target": "ask"}], services=_settings())
    final = assert_finished(events_, "failed")
    message = "OPENAI_API_KEY is not set: configure it (or OPENAI_BASE_URL for an OpenAI-compatible server)"
    assert finished(events_)["ask"]["error"] == message
    assert message in final.error


def test_keyless_compatible_server_and_publish_in_pure_engine(fake_openai: FakeOpenAI):
    """With only OPENAI_BASE_URL (e.g. a local server needing no key) the node runs; tokens are published."""
    fake_openai.reply("local model says hi", chunk_size=5)
    published: list[Any] = []
    services = _settings(openai_base_url=fake_openai.base_url)
    nodes = [node("start", "manual"), node("ask", "llm", prompt="Hi", model="llama3")]
    events_, _ = execute(nodes, [{"source": "start", "target": "ask"}], services=services,
                         publish=published.append)
    assert_finished(events_)
    assert finished(events_)["ask"]["output"]["text"] == "local model says hi"
    assert "".join(e.text for e in published if isinstance(e, LlmTokens)) == "local model says hi"
    assert isinstance(published[-1], LlmUsage) and published[-1].node_id == "ask"
    assert fake_openai.last.model == "llama3"


def test_stop_in_pure_engine_stops_the_run(fake_openai: FakeOpenAI):
    fake_openai.reply(chunks=[f"t{i} " for i in range(500)], delay=0.01)
    seen: list[str] = []
    services = _settings(openai_api_key="k", openai_base_url=fake_openai.base_url)
    ctx_stop = lambda: "llm.token" in seen  # noqa: E731 - stop once the first token was published
    nodes = [node("start", "manual"), node("ask", "llm", prompt="Hi")]
    events_, state = execute(nodes, [{"source": "start", "target": "ask"}], services=services,
                             should_stop=ctx_stop, publish=lambda event: seen.append(event.kind))
    assert type(events_[-1]).__name__ == "RunStopped"
    assert "ask" not in state.entries
    record = fake_openai.wait_finished(fake_openai.last)
    assert record.disconnected and record.chunks_sent < record.chunks_scripted
