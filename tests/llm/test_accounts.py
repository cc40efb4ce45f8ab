"""Providers and accounts through the API, with the real ``openai`` client checking every account
against the fake OpenAI-compatible server's models listing."""
from __future__ import annotations

import pytest

from athena.extensions import db
from athena.models import Account
from tests.api.helpers import assert_json_error, changed_tables, snapshot
from tests.factories import headers_for, make_user, make_workspace
from tests.llm.support import GOOD_KEY, account_body, create_account, provider_uuid
from tests.nodes import clean_rq
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import free_port

__all__ = ["clean_rq"]


@pytest.fixture
def people(client):
    owner, editor, viewer, outsider = make_user(), make_user(), make_user(), make_user()
    workspace = make_workspace(owner, "AI", members={editor: "editor", viewer: "viewer"})
    elsewhere = make_workspace(outsider, "Elsewhere")
    return {"owner": headers_for(owner), "editor": headers_for(editor), "viewer": headers_for(viewer),
            "outsider": headers_for(outsider), "workspace": workspace.uuid, "elsewhere": elsewhere.uuid}


def test_the_built_in_providers_are_listed(client, people):
    response = client.get("/api/v1/providers", headers=people["viewer"])
    assert response.status_code == 200
    by_slug = {p["slug"]: p for p in response.json["data"]}
    assert {"openai", "openai_compatible"} <= set(by_slug) and len(by_slug) >= 5
    openai = by_slug["openai"]
    assert openai["is_builtin"] and openai["workspace_id"] is None and openai["name"] == "OpenAI"
    fields = {f["name"]: f for f in openai["authentication_config"]["fields"]}
    assert fields["api_key"]["required"] and fields["api_key"]["secret"]
    assert not fields["base_url"]["secret"] and fields["extra_headers"]["secret"]
    compatible = {f["name"]: f for f in by_slug["openai_compatible"]["authentication_config"]["fields"]}
    assert compatible["base_url"]["required"] and not compatible["api_key"]["required"]
    assert set(response.json) == {"data", "meta", "links"} and response.json["meta"]["total"] == len(by_slug)
    searched = client.get("/api/v1/providers", query_string={"search": "compat"}, headers=people["viewer"])
    assert [p["slug"] for p in searched.json["data"]] == ["openai_compatible"]


def test_built_in_providers_are_read_only(client, people):
    url = f"/api/v1/providers/{provider_uuid('openai')}"
    assert client.get(url, headers=people["owner"]).status_code == 200
    before = snapshot()
    assert assert_json_error(client.put(url, json={"name": "Mine"}, headers=people["owner"]), 403)
    assert assert_json_error(client.delete(url, headers=people["owner"]), 403)
    assert changed_tables(before) == []


def test_custom_provider_crud_and_scope(client, people):
    body = {"workspace_uuid": people["workspace"], "slug": "gateway", "name": "Gateway",
            "base_url": "https://llm.example.com/v1",
            "authentication_config": {"fields": [{"name": "api_key", "required": True}]}}
    assert assert_json_error(client.post("/api/v1/providers", json=body, headers=people["viewer"]), 403)
    created = client.post("/api/v1/providers", json=body, headers=people["editor"])
    assert created.status_code == 201, created.json
    provider = created.json["data"]
    assert provider["is_builtin"] is False and provider["authentication_config"]["fields"][0]["secret"] is True
    url = f"/api/v1/providers/{provider['uuid']}"
    assert assert_json_error(client.get(url, headers=people["outsider"]), 404)
    assert client.get("/api/v1/providers", headers=people["outsider"]).json["meta"]["total"] == 8
    taken = client.post("/api/v1/providers", json={**body, "slug": "openai"}, headers=people["owner"])
    assert "slug" in assert_json_error(taken, 409)["errors"]
    renamed = client.put(url, json={"name": "Gateway EU", "workspace_uuid": people["workspace"]},
                         headers=people["owner"])
    assert renamed.status_code == 200 and renamed.json["data"]["name"] == "Gateway EU"
    moved = client.put(url, json={"workspace_uuid": people["elsewhere"]}, headers=people["owner"])
    assert "workspace_uuid" in assert_json_error(moved, 422)["errors"]
    assert client.delete(url, headers=people["owner"]).status_code == 204
    assert assert_json_error(client.get(url, headers=people["owner"]), 404)


def test_create_an_account_checked_against_the_provider(client, people, fake_openai: FakeOpenAI):
    fake_openai.valid_keys = {GOOD_KEY}
    response = client.post("/api/v1/accounts", json=account_body(people["workspace"], fake_openai.base_url),
                           headers=people["editor"])
    assert response.status_code == 201, response.json
    data = response.json["data"]
    assert set(data) >= {"id", "uuid", "workspace_id", "provider", "name", "is_default", "credentials",
                         "created_at", "updated_at", "deleted_at"}
    assert data["provider"] == {"uuid": provider_uuid("openai"), "slug": "openai", "name": "OpenAI"}
    assert data["credentials"] == {"api_key": "sk-…a1b2", "base_url": fake_openai.base_url}
    assert data["is_default"] is True  # the workspace's first account
    # a sync was asked for; the session worker may already be at it when the answer is made
    assert data["last_verified_at"] is not None and data["sync_status"] in ("queued", "pending", "syncing", "synced")
    assert any(r.path == "/v1/models" and r.headers["authorization"] == f"Bearer {GOOD_KEY}"
               for r in fake_openai.model_requests)
    stored = db.session.execute(db.select(Account)).scalar_one()
    assert GOOD_KEY not in str(stored.credentials) and stored.credentials["api_key"].startswith("enc:v1:")
    listed = client.get("/api/v1/accounts", query_string={"workspace_uuid": people["workspace"]},
                        headers=people["viewer"])
    assert listed.json["data"][0]["credentials"]["api_key"] == "sk-…a1b2" and listed.json["meta"]["total"] == 1


def test_a_refused_key_is_422_with_the_providers_reason(client, people, fake_openai: FakeOpenAI):
    fake_openai.valid_keys = {GOOD_KEY}
    before = snapshot()
    response = client.post("/api/v1/accounts", json=account_body(people["workspace"], fake_openai.base_url,
                                                                 key="sk-wrong-key-0000"), headers=people["owner"])
    body = assert_json_error(response, 422)
    assert body["message"].startswith("The provider refused the key: Incorrect API key provided")
    assert "credentials.api_key" in body["errors"]
    assert changed_tables(before) == []
    # ?verify=false skips the check: nothing is asked of the provider
    # ?verify=false skips the check: a key the provider refuses is stored unchecked
    skipped = client.post("/api/v1/accounts?verify=false", json=account_body(
        people["workspace"], fake_openai.base_url, key="sk-skipped-key-0000"), headers=people["owner"])
    assert skipped.status_code == 201 and skipped.json["data"]["last_verified_at"] is None


def test_a_wrong_base_url_is_422(client, people, fake_openai: FakeOpenAI):
    wrong_path = client.post("/api/v1/accounts", json=account_body(people["workspace"], fake_openai.url + "/nope"),
                             headers=people["owner"])
    assert "credentials.base_url" in assert_json_error(wrong_path, 422)["errors"]
    closed = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = client.post("/api/v1/accounts", json=account_body(people["workspace"], closed),
                              headers=people["owner"])
    body = assert_json_error(unreachable, 422)
    assert "unreachable" in body["message"] and "credentials.base_url" in body["errors"]


def test_masking_of_short_keys_and_extra_headers(client, people, fake_openai: FakeOpenAI):
    body = account_body(people["workspace"], fake_openai.base_url, key="short-key", slug="openai_compatible")
    body["credentials"]["extra_headers"] = {"X-Tenant": "tenant-secret-value-9876"}
    response = client.post("/api/v1/accounts", json=body, headers=people["owner"])
    assert response.status_code == 201, response.json
    credentials = response.json["data"]["credentials"]
    assert credentials["api_key"] == "…"
    assert credentials["extra_headers"] == {"X-Tenant": "ten…9876"}
    assert any(r.headers.get("x-tenant") == "tenant-secret-value-9876" for r in fake_openai.model_requests)


def test_put_semantics(client, people, fake_openai: FakeOpenAI):
    account = create_account(client, people["owner"], people["workspace"], fake_openai.base_url)
    url = f"/api/v1/accounts/{account['uuid']}"
    # the masked key sent back keeps the stored one; the same workspace_uuid is ignored
    same = client.put(url, json={"name": "Renamed", "workspace_uuid": people["workspace"],
                                 "credentials": {"api_key": "sk-…a1b2"}}, headers=people["editor"])
    assert same.status_code == 200, same.json
    assert same.json["data"]["name"] == "Renamed" and same.json["data"]["credentials"]["api_key"] == "sk-…a1b2"
    assert fake_openai.model_requests[-1].headers["authorization"] == f"Bearer {GOOD_KEY}"
    # another workspace's uuid is a 422, and changes nothing
    stored = _stored(account["uuid"])
    moved = client.put(url, json={"name": "Moved", "workspace_uuid": people["elsewhere"]}, headers=people["owner"])
    assert "workspace_uuid" in assert_json_error(moved, 422)["errors"]
    assert _stored(account["uuid"]) == stored
    # permission before validation: a viewer's invalid body is a 403, an outsider's a 404
    bad = {"name": "", "credentials": {"api_key": 7}, "unknown": True}
    assert assert_json_error(client.put(url, json=bad, headers=people["viewer"]), 403)
    assert assert_json_error(client.put(url, json=bad, headers=people["outsider"]), 404)
    assert assert_json_error(client.put(url, json=bad, headers=people["owner"]), 422)
    create_bad = {"workspace_uuid": people["workspace"], "name": 5}
    assert assert_json_error(client.post("/api/v1/accounts", json=create_bad, headers=people["viewer"]), 403)
    assert assert_json_error(client.post("/api/v1/accounts", json={**create_bad, "workspace_uuid": people["elsewhere"]},
                                         headers=people["owner"]), 404)
    # a refused new key on update: 422 and the stored account unchanged
    fake_openai.valid_keys = {GOOD_KEY}
    stored = _stored(account["uuid"])
    refused = client.put(url, json={"name": "Refused", "credentials": {"api_key": "sk-another-wrong-1111"}},
                         headers=people["owner"])
    assert assert_json_error(refused, 422)["message"].startswith("The provider refused the key")
    assert _stored(account["uuid"]) == stored


def test_a_mask_that_is_not_the_stored_secrets_is_422(client, people, fake_openai: FakeOpenAI):
    account = create_account(client, people["owner"], people["workspace"], fake_openai.base_url)
    url = f"/api/v1/accounts/{account['uuid']}?verify=false"
    for credentials in ({"api_key": "sk-…zzzz"}, {"extra_headers": {"X-Team": "abc…wxyz"}},
                        {"organization": "org-\u00e9t\u00e9"}):
        response = client.put(url, json={"credentials": credentials}, headers=people["owner"])
        assert assert_json_error(response, 422)["errors"], credentials


def _stored(uuid: str) -> tuple:
    """The account's row as the API may change it (a worker may be syncing its models meanwhile)."""
    db.session.expire_all()
    account = db.session.execute(db.select(Account).where(Account.uuid == uuid)).scalar_one()
    return account.name, account.credentials, account.is_default, account.workspace_id, account.provider_id


def test_one_default_account_per_workspace(client, people, fake_openai: FakeOpenAI):
    first = create_account(client, people["owner"], people["workspace"], fake_openai.base_url, name="First")
    second = create_account(client, people["owner"], people["workspace"], fake_openai.base_url, name="Second")
    assert first["is_default"] and not second["is_default"]
    made = client.put(f"/api/v1/accounts/{second['uuid']}?verify=false", json={"is_default": True},
                      headers=people["owner"])
    assert made.json["data"]["is_default"] is True
    again = client.get(f"/api/v1/accounts/{first['uuid']}", headers=people["owner"]).json["data"]
    assert again["is_default"] is False
    defaults = client.get("/api/v1/accounts", query_string={"is_default": "true"}, headers=people["owner"]).json
    assert [a["uuid"] for a in defaults["data"]] == [second["uuid"]]
    assert client.delete(f"/api/v1/accounts/{second['uuid']}", headers=people["viewer"]).status_code == 403
    assert client.delete(f"/api/v1/accounts/{second['uuid']}", headers=people["owner"]).status_code == 204
    assert client.get(f"/api/v1/accounts/{second['uuid']}", headers=people["owner"]).status_code == 404


def test_the_ssrf_guard_in_production(app, client, people, fake_openai: FakeOpenAI):
    saved = (app.config["LLM_SSRF_GUARD"], app.config["LLM_ALLOWLIST"])
    app.config["LLM_SSRF_GUARD"], app.config["LLM_ALLOWLIST"] = True, []
    try:
        key = "sk-ssrf-guard-test-7777"
        refused = client.post("/api/v1/accounts", json=account_body(people["workspace"], fake_openai.base_url,
                                                                    key=key), headers=people["owner"])
        body = assert_json_error(refused, 422)
        assert "loopback" in body["message"] and "ATHENA_LLM_ALLOWLIST" in body["message"]
        # never asked (a worker may be syncing another test's account meanwhile: not with this key)
        assert [r for r in fake_openai.model_requests if key in r.headers.get("authorization", "")] == []
        app.config["LLM_ALLOWLIST"] = ["127.0.0.1"]
        create_account(client, people["owner"], people["workspace"], fake_openai.base_url)
    finally:
        app.config["LLM_SSRF_GUARD"], app.config["LLM_ALLOWLIST"] = saved
