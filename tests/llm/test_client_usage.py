"""The client layer with the real ``openai`` client against the fake server: the ``llm`` node (real
worker) and Generate Workflow (the API) on an account, one usage row per call with its tokens and
cost, and the errors: 503 with nothing configured, a refused key 422, 429 passed on with
Retry-After, a hanging provider bounded by the timeout (none of them without a usage row)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.api.helpers import assert_json_error
from tests.factories import headers_for, make_user, make_workspace
from tests.llm.support import GOOD_KEY, create_account, usage_rows
from tests.nodes import clean_rq
from tests.nodes.test_llm_node import entries, llm_workflow, wait_finished
from tests.support.fake_openai import FakeOpenAI

__all__ = ["clean_rq"]
GENERATE = "/api/v1/workflows/generate"
WORKFLOW = {"name": "Ping", "description": "A manual trigger", "nodes": [{"id": "start", "type": "manual"}],
            "edges": []}


@pytest.fixture
def setup(client):
    user = make_user()
    workspace = make_workspace(user)
    return client, headers_for(user), workspace.uuid


def _run(setup, parameters: dict) -> str:
    client, headers, workspace_uuid = setup
    created = llm_workflow(client, headers, workspace_uuid, parameters)
    assert created.status_code == 201, created.json
    run = client.post("/api/v1/workflow-executions", json={"workflow_uuid": created.json["data"]["uuid"]},
                      headers=headers)
    assert run.status_code == 201, run.json
    return run.json["data"]["uuid"]


@pytest.mark.parametrize("stream", [False, True])
def test_the_llm_node_on_an_account_records_usage_and_cost(setup, worker, fake_openai: FakeOpenAI, stream):
    client, headers, workspace_uuid = setup
    fake_openai.valid_keys = {GOOD_KEY}  # the worker's environment key would be refused: the account's is used
    account = create_account(client, headers, workspace_uuid, fake_openai.base_url)
    fake_openai.reply("Hello from the account", usage={"prompt_tokens": 1000, "completion_tokens": 500,
                                                       "total_tokens": 1500})
    uuid = _run(setup, {"prompt": "Hi", "model": "gpt-4.1-mini", "account_uuid": account["uuid"], "stream": stream})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "completed", data
    output = entries(data)["ask"]["output"]
    assert output["text"] == "Hello from the account"
    # 1000 x 0.40 + 500 x 1.60 USD per million tokens
    assert output["usage"] == {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                               "cost": "0.00120000"}
    assert fake_openai.last.headers["authorization"] == f"Bearer {GOOD_KEY}"
    [row] = usage_rows(caller_type="execution_node")
    assert (row.caller_id, row.node_id, row.model, row.status, row.stream) == (uuid, "ask", "gpt-4.1-mini",
                                                                             "success", stream)
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (1000, 500, 1500)
    assert row.cost == Decimal("0.0012") and row.latency_ms >= 0 and row.provider_slug == "openai"
    assert row.account_id is not None and row.workspace_id is not None and row.user_id is not None


def test_the_default_account_and_an_unpriced_model(setup, worker, fake_openai: FakeOpenAI):
    client, headers, workspace_uuid = setup
    fake_openai.valid_keys = {GOOD_KEY}
    create_account(client, headers, workspace_uuid, fake_openai.base_url)  # the first: the default
    fake_openai.reply("ok", usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    uuid = _run(setup, {"prompt": "Hi", "model": "my-finetune", "stream": False})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "completed", data
    assert entries(data)["ask"]["output"]["usage"]["cost"] is None
    [row] = usage_rows()
    assert (row.input_tokens, row.output_tokens, row.cost, row.model) == (7, 3, None, "my-finetune")


def test_an_unknown_account_fails_the_node(setup, worker, fake_openai: FakeOpenAI):
    uuid = _run(setup, {"prompt": "Hi", "account_uuid": "00000000-0000-4000-8000-000000000000"})
    data = wait_finished(setup, uuid, worker)
    assert data["status"] == "failed" and "No such account in this workspace" in data["error"]
    assert fake_openai.requests == []


def _generate(client, headers, workspace_uuid, **extra):
    return client.post(GENERATE, json={"workspace_uuid": workspace_uuid, "prompt": "Ping me", **extra},
                       headers=headers)


@pytest.mark.parametrize("stream", [False, True])
def test_generate_on_an_account_records_usage(setup, fake_openai: FakeOpenAI, stream: bool):
    client, headers, workspace_uuid = setup
    account = create_account(client, headers, workspace_uuid, fake_openai.base_url)
    fake_openai.reply_json(WORKFLOW, usage={"prompt_tokens": 2000, "completion_tokens": 100, "total_tokens": 2100})
    response = _generate(client, headers, workspace_uuid, account_uuid=account["uuid"], model="gpt-4o",
                         stream=stream)
    assert response.status_code == 200, response.get_data(as_text=True)
    if not stream:
        assert json.loads(response.json["data"])["name"] == "Ping"
    if stream:
        assert "event: workflow" in response.get_data(as_text=True)  # the stream read to its end
    [row] = usage_rows(caller_type="generation")
    assert (row.model, row.input_tokens, row.output_tokens, row.status) == ("gpt-4o", 2000, 100, "success")
    assert row.cost == Decimal("0.006")  # 2000 x 2.50 + 100 x 10.00 per million
    assert fake_openai.last.headers["authorization"] == f"Bearer {GOOD_KEY}"


def test_no_account_and_no_environment_key_is_503(setup, worker, fake_openai: FakeOpenAI):
    client, headers, workspace_uuid = setup
    body = assert_json_error(_generate(client, headers, workspace_uuid), 503)
    assert "POST /api/v1/accounts" in body["message"] and "OPENAI_API_KEY" in body["message"]
    assert fake_openai.requests == [] and usage_rows() == []


def test_a_key_refused_at_call_time_is_422_on_the_account(setup, fake_openai: FakeOpenAI):
    client, headers, workspace_uuid = setup
    create_account(client, headers, workspace_uuid, fake_openai.base_url)
    fake_openai.valid_keys = {"sk-rotated-by-the-provider"}
    body = assert_json_error(_generate(client, headers, workspace_uuid), 422)
    assert body["message"].startswith("The provider refused the key")
    [row] = usage_rows()
    assert row.status == "refused" and row.input_tokens is None


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_429_is_passed_on_with_retry_after(setup, fake_openai: FakeOpenAI, stream: bool):
    client, headers, workspace_uuid = setup
    create_account(client, headers, workspace_uuid, fake_openai.base_url)
    fake_openai.reply_error(429, "Rate limit reached for gpt-4.1-mini", headers={"retry-after": "30"})
    response = _generate(client, headers, workspace_uuid, stream=stream)
    response.get_data()
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "30" and "Rate limit reached" in response.json["message"]
    assert len(fake_openai.requests) == 1  # longer than ATHENA_LLM_RETRY_MAX_WAIT: passed on, not waited for
    [row] = usage_rows()
    assert row.status == "rate_limited"


def test_a_short_429_and_a_500_are_retried_with_backoff(setup, fake_openai: FakeOpenAI):
    client, headers, workspace_uuid = setup
    create_account(client, headers, workspace_uuid, fake_openai.base_url)
    fake_openai.reply_error(429, "slow down", headers={"retry-after": "0"})
    fake_openai.reply_error(503, "overloaded")
    fake_openai.reply_json(WORKFLOW)
    response = _generate(client, headers, workspace_uuid)
    assert response.status_code == 200, response.json
    [row] = usage_rows()
    assert (row.status, row.attempts) == ("success", 3)


def test_a_hanging_provider_is_bounded_by_the_timeout(app, setup, fake_openai: FakeOpenAI):
    client, headers, workspace_uuid = setup
    create_account(client, headers, workspace_uuid, fake_openai.base_url)
    fake_openai.hang()
    saved = app.config["LLM_TIMEOUT"]
    app.config["LLM_TIMEOUT"] = 0.5
    try:
        response = _generate(client, headers, workspace_uuid)
    finally:
        app.config["LLM_TIMEOUT"] = saved
    body = assert_json_error(response, 504)
    assert "did not answer within 0.5s" in body["message"]
    [row] = usage_rows()
    assert row.status == "timeout"


def test_a_hanging_provider_fails_the_node_at_its_timeout(setup, worker, fake_openai: FakeOpenAI):
    client, headers, workspace_uuid = setup
    create_account(client, headers, workspace_uuid, fake_openai.base_url)
    fake_openai.hang()
    created = llm_workflow(client, headers, workspace_uuid, {"prompt": "Hi", "stream": False},
                           settings={"timeout": 1})
    run = client.post("/api/v1/workflow-executions", json={"workflow_uuid": created.json["data"]["uuid"]},
                      headers=headers)
    data = wait_finished(setup, run.json["data"]["uuid"], worker)
    assert data["status"] == "failed" and "timed out" in data["error"]
