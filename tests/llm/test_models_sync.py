"""Model sync: the real RQ worker lists the account's models on the fake server (the real
``openai`` client) and merges them with the shipped known-models table; the API lists them."""
from __future__ import annotations

import pytest

from tests.factories import headers_for, make_user, make_workspace
from tests.llm.support import create_account
from tests.nodes import clean_rq
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import wait_for

__all__ = ["clean_rq"]
URL = "/api/v1/large-language-models"


@pytest.fixture
def owner(client):
    user = make_user()
    return headers_for(user), make_workspace(user, "Models").uuid


def _models(client, headers, **query) -> dict:
    response = client.get(URL, query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def _wait_synced(client, headers, workspace_uuid: str, count: int, worker) -> dict:
    return wait_for(lambda: (page := _models(client, headers, workspace_uuid=workspace_uuid))["meta"]["total"] == count
                    and page, timeout=60, message="the models to be synced\n" + worker.read_log()[-2000:])


def test_models_are_synced_by_the_worker_and_merged_with_the_known_table(client, owner, worker, fake_openai):
    headers, workspace_uuid = owner
    account = create_account(client, headers, workspace_uuid, fake_openai.base_url)
    page = _wait_synced(client, headers, workspace_uuid, 4, worker)
    assert set(page) == {"data", "meta", "links"}
    by_id = {m["model_id"]: m for m in page["data"]}
    assert sorted(by_id) == ["gpt-4.1-mini", "gpt-4o", "llama3.1:8b", "my-finetune"]
    mini = by_id["gpt-4.1-mini"]
    assert mini["account_uuid"] == account["uuid"] and mini["provider"]["slug"] == "openai"
    assert (mini["context_window"], mini["max_output_tokens"]) == (1047576, 32768)
    assert (mini["input_price_per_million"], mini["output_price_per_million"]) == ("0.400000", "1.600000")
    assert mini["capabilities"] == ["tools", "json_schema", "streaming", "vision"] and mini["is_known"]
    llama = by_id["llama3.1:8b"]  # an open-weight family: known window, no shipped price
    assert llama["family"] == "llama" and llama["context_window"] == 131072
    assert llama["input_price_per_million"] is None and "vision" not in llama["capabilities"]
    unknown = by_id["my-finetune"]
    assert not unknown["is_known"] and unknown["context_window"] is None and unknown["owned_by"] == "fake-openai"
    one = client.get(f"{URL}/{mini['uuid']}", headers=headers)
    assert one.status_code == 200 and one.json["data"] == mini
    synced = client.get(f"/api/v1/accounts/{account['uuid']}", headers=headers).json["data"]
    assert synced["sync_status"] == "synced" and synced["models_synced_at"] is not None
    # no credential in the job: the worker reloaded the account by id
    assert all(r.headers["authorization"] == "Bearer sk-athena-test-key-a1b2" for r in fake_openai.model_requests)


def test_filters_search_and_sync_on_demand(client, owner, worker, fake_openai: FakeOpenAI):
    headers, workspace_uuid = owner
    account = create_account(client, headers, workspace_uuid, fake_openai.base_url)
    _wait_synced(client, headers, workspace_uuid, 4, worker)
    ids = lambda page: sorted(m["model_id"] for m in page["data"])  # noqa: E731
    assert ids(_models(client, headers, search="GPT")) == ["gpt-4.1-mini", "gpt-4o"]
    assert ids(_models(client, headers, capability="vision")) == ["gpt-4.1-mini", "gpt-4o"]
    assert ids(_models(client, headers, capability=["tools", "json_schema"], is_known="false")) == []
    assert ids(_models(client, headers, account_uuid=account["uuid"], provider="openai"))[0] == "gpt-4.1-mini"
    assert _models(client, headers, provider="groq")["meta"]["total"] == 0
    assert _models(client, headers, sort_by="context_window", sort_direction="desc")["data"][0]["context_window"] == 1047576
    assert client.get(URL, query_string={"capability": "telepathy"}, headers=headers).status_code == 422
    # an outsider sees none of them, and gets 404 for one
    outsider = headers_for(make_user())
    assert _models(client, outsider)["meta"]["total"] == 0
    assert client.get(f"{URL}/{_models(client, headers)['data'][0]['uuid']}", headers=outsider).status_code == 404
    # the provider's list changes; a sync on demand (202) follows it
    fake_openai.models = ["gpt-4o", "qwen2.5:7b"]
    queued = client.post(f"/api/v1/accounts/{account['uuid']}/sync-models", headers=headers)
    assert queued.status_code == 202 and queued.json["data"]["uuid"] == account["uuid"]
    page = wait_for(lambda: (p := _models(client, headers))["meta"]["total"] == 2 and
                    ids(p) == ["gpt-4o", "qwen2.5:7b"] and p, timeout=60, message="the re-sync")
    assert {m["model_id"]: m["family"] for m in page["data"]}["qwen2.5:7b"] == "qwen"


def test_a_failed_sync_is_shown_on_the_account(client, owner, worker, fake_openai: FakeOpenAI):
    headers, workspace_uuid = owner
    account = create_account(client, headers, workspace_uuid, fake_openai.base_url)
    _wait_synced(client, headers, workspace_uuid, 4, worker)
    fake_openai.valid_keys = {"sk-only-this-key-9999"}
    client.post(f"/api/v1/accounts/{account['uuid']}/sync-models", headers=headers)
    shown = wait_for(lambda: (a := client.get(f"/api/v1/accounts/{account['uuid']}", headers=headers).json["data"])
                     ["sync_status"] == "failed" and a, timeout=60, message="the failed sync")
    assert "refused the key" in shown["sync_error"]
    assert _models(client, headers)["meta"]["total"] == 4  # the models it had stay
