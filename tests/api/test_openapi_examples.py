"""The OpenAPI document's request examples (athena/api/examples.py) and its plain-text prose.

Every operation that takes a body documents an example for each media type; every example is
valid against its schema and, sent to the app as written (its placeholders replaced with the
caller's real uuids), answers 2xx; the workflow example answers the webhook example end to end on
the real worker. No summary or description carries reStructuredText markup."""
from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema_rs
import pytest

from athena.api import examples
from athena.auth import hash_password
from athena.extensions import db
from athena.models import Account, WorkflowApproval, WorkflowExecution
from athena.timeutil import utcnow
from tests.api.helpers import METHODS
from tests.factories import headers_for, make_llm_objects, make_user, make_workflow, make_workspace
from tests.nodes import clean_rq
from tests.support.fake_openai import FakeOpenAI

__all__ = ["clean_rq"]  # autouse: the executions the examples queue (no worker runs them) are dropped

SPEC_URL = "/api/v1/openapi.json"
WEBHOOK = ("post", "/api/v1/workflows/{uuid}/webhook")
# Every operation that takes a body, and the media types it documents.
BODY_OPERATIONS = {
    ("post", "/api/v1/auth/sign-in"): {"application/json"},
    ("post", "/api/v1/workspaces"): {"application/json"},
    ("put", "/api/v1/workspaces/{uuid}"): {"application/json"},
    ("post", "/api/v1/workspaces/{uuid}/members"): {"application/json"},
    ("put", "/api/v1/workspaces/{uuid}/members/{user_uuid}"): {"application/json"},
    ("post", "/api/v1/workflows"): {"application/json"},
    ("put", "/api/v1/workflows/{uuid}"): {"application/json"},
    ("post", "/api/v1/workflows/generate"): {"application/json", "multipart/form-data"},
    WEBHOOK: {"application/json", "application/x-www-form-urlencoded", "text/plain"},
    ("post", "/api/v1/workflow-executions"): {"application/json"},
    ("put", "/api/v1/workflow-executions/{uuid}"): {"application/json"},
    ("patch", "/api/v1/workflow-executions/{uuid}"): {"application/json"},
    ("post", "/api/v1/workflow-executions/{uuid}/approvals/{approval_id}/approve"): {"application/json"},
    ("post", "/api/v1/workflow-executions/{uuid}/approvals/{approval_id}/reject"): {"application/json"},
    ("post", "/api/v1/providers"): {"application/json"},
    ("put", "/api/v1/providers/{uuid}"): {"application/json"},
    ("post", "/api/v1/accounts"): {"application/json"},
    ("put", "/api/v1/accounts/{uuid}"): {"application/json"},
}
# reStructuredText: inline literals, roles (:class:`x`, :py:func:`x`), interpreted text and
# hyperlink references (`x`_), directives (.. note::).
RST = re.compile(r"``|:[a-z]+(?::[a-z]+)?:`|`[^`]+`_|^\s*\.\. [a-z-]+::", re.MULTILINE)
SIGN_IN_PASSWORD = examples.SIGN_IN["default"]["value"]["password"]
_password_hash: list[str] = []


@pytest.fixture
def spec(client) -> dict[str, Any]:
    return client.get(SPEC_URL).json


def _operations(spec: dict[str, Any]):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def _examples(media: dict[str, Any]) -> list[Any]:
    found = [media["example"]] if "example" in media else []
    return found + [example["value"] for example in media.get("examples", {}).values()]


def _prose(value: Any, where: str = ""):
    """Every summary and description in the document, with where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("summary", "description") and isinstance(item, str):
                yield f"{where}/{key}", item
            else:
                yield from _prose(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _prose(item, f"{where}/{index}")


# -- plain text ----------------------------------------------------------------------------------


def test_no_restructuredtext_markup_anywhere_in_the_document(client):
    text = client.get(SPEC_URL).get_data(as_text=True)
    assert "``" not in text
    found = {match.group(0) for match in RST.finditer(json.dumps(json.loads(text), indent=1))}
    assert not found, found


def test_summaries_and_descriptions_are_plain_text(spec):
    problems = [f"{where}: {text[:120]!r}" for where, text in _prose(spec) if "`" in text or RST.search(text)]
    assert not problems, "\n".join(problems)
    multiline = [f"{method.upper()} {path}" for method, path, operation in _operations(spec)
                 if "\n" in operation.get("summary", "")]
    assert not multiline, multiline  # a summary is one line; the rest belongs in the description


def test_the_webhook_and_approval_summaries_read_as_the_api_reference_does(spec):
    assert spec["paths"]["/api/v1/workflows/{uuid}/webhook"]["post"]["summary"] == "Trigger a webhook"
    assert spec["paths"]["/api/v1/workflows"]["post"]["summary"] == "Create a workflow"
    description = spec["paths"]["/api/v1/workflows/{uuid}/webhook"]["post"]["description"]
    assert "wait=true" in description and "X-Athena-Signature" in description


# -- every body has a valid example --------------------------------------------------------------


def test_every_operation_with_a_body_documents_an_example_per_media_type(spec):
    documented = {}
    for method, path, operation in _operations(spec):
        body = operation.get("requestBody")
        if body is None:
            continue
        documented[(method, path)] = set(body["content"])
        for media_type, media in body["content"].items():
            assert _examples(media), f"{method.upper()} {path} {media_type}: no example"
    assert documented == BODY_OPERATIONS


def test_the_webhook_documents_an_optional_body_of_any_type(spec):
    body = spec["paths"][WEBHOOK[1]]["post"]["requestBody"]
    assert body["required"] is False  # a webhook call without a body is fine
    assert _examples(body["content"]["application/json"]) == [examples.SIGN_UP]


def _json_schema(value: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema (draft 4): ``nullable`` becomes a null branch."""
    if isinstance(value, list):
        return [_json_schema(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _json_schema(item) for key, item in value.items() if key != "nullable"}
    if value.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def test_every_example_is_valid_against_its_schema(spec):
    components = _json_schema(spec["components"])
    problems, checked = [], 0
    for method, path, operation in _operations(spec):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            validator = jsonschema_rs.Draft4Validator({**_json_schema(media["schema"]), "components": components})
            for value in _examples(media):
                checked += 1
                problems.extend(f"{method.upper()} {path} {media_type}: {error.message}"
                                for error in validator.iter_errors(value))
    assert checked >= sum(len(types) for types in BODY_OPERATIONS.values())
    assert not problems, "\n".join(problems)


# -- every example works ---------------------------------------------------------------------------


def _paused_execution_with_approval(workflow) -> tuple[WorkflowExecution, WorkflowApproval]:
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workflow.workspace_id,
                                  user_id=workflow.user_id, status="paused", requires_human_review=True,
                                  started_at=utcnow())
    db.session.add(execution)
    db.session.flush()
    approval = WorkflowApproval(workflow_execution_id=execution.id, node_id="gate", status="pending",
                                message="Refund 42 EUR?")
    db.session.add(approval)
    db.session.commit()
    return execution, approval


def _scene() -> dict[str, Any]:
    """The caller (the sign-in example's account, owner of a workspace with an editor), the user
    the member example adds, the example workflow, and paused executions with pending approvals."""
    if not _password_hash:
        _password_hash.append(hash_password(SIGN_IN_PASSWORD))
    owner = make_user(email=examples.SIGN_IN["default"]["value"]["email"])
    owner.password_hash = _password_hash[0]
    editor = make_user()
    make_user(email=examples.MEMBER_CREATE["default"]["value"]["email"])
    workspace = make_workspace(owner, "Examples", members={editor: "editor"})
    graph = copy.deepcopy(examples.GREETER_GRAPH)
    workflow = make_workflow(workspace, owner, nodes=graph["nodes"], edges=graph["edges"], name="Greeter")
    approved, approve = _paused_execution_with_approval(workflow)
    rejected, reject = _paused_execution_with_approval(workflow)
    provider, account, _model = make_llm_objects(workspace, owner)
    return {"headers": headers_for(owner), "workspace": workspace.uuid, "workflow": workflow.uuid,
            "editor": editor.uuid, "approve": (approved.uuid, approve.uuid), "reject": (rejected.uuid, reject.uuid),
            "provider": provider.uuid, "account": account.uuid}


def _url(path: str, scene: dict[str, Any]) -> str:
    for prefix, kind in (("/api/v1/providers/", "provider"), ("/api/v1/accounts/", "account")):
        if path.startswith(prefix):
            return path.replace("{uuid}", scene[kind])
    if "{approval_id}" in path:
        execution, approval = scene["approve" if path.endswith("/approve") else "reject"]
        return path.replace("{uuid}", execution).replace("{approval_id}", approval)
    if path.startswith("/api/v1/workflow-executions/"):
        return path.replace("{uuid}", scene["approve"][0])
    if path.startswith("/api/v1/workflows/"):
        return path.replace("{uuid}", scene["workflow"])
    return path.replace("{uuid}", scene["workspace"]).replace("{user_uuid}", scene["editor"])


def _replace_placeholders(value: Any, scene: dict[str, Any]) -> Any:
    text = json.dumps(value)
    if scene.get("model_base_url"):  # the account example's local model server: the fake one here
        text = text.replace(examples.LOCAL_MODEL_BASE_URL, scene["model_base_url"])
    text = text.replace(examples.WORKSPACE_PLACEHOLDER, scene["workspace"])
    return json.loads(text.replace(examples.WORKFLOW_PLACEHOLDER, scene["workflow"]))


def _form(value: dict[str, Any]) -> dict[str, str]:
    return {key: ("true" if item else "false") if isinstance(item, bool) else str(item) for key, item in value.items()}


def _send(client, method: str, url: str, media_type: str, value: Any, headers: dict[str, str]):
    if media_type == "application/json":
        return client.open(url, method=method, json=value, headers=headers)
    if media_type == "text/plain":
        return client.open(url, method=method, data=value, content_type="text/plain", headers=headers)
    return client.open(url, method=method, data=_form(value), content_type=media_type, headers=headers)


def test_every_example_is_accepted_as_written(client, spec, fake_openai_app: FakeOpenAI):
    scene = _scene()
    scene["model_base_url"] = fake_openai_app.base_url
    account = db.session.execute(db.select(Account).where(Account.uuid == scene["account"])).scalar_one()
    account.credentials = {**account.credentials, "base_url": fake_openai_app.base_url}
    db.session.commit()
    sent, problems = [], []
    for method, path, operation in _operations(spec):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            for value in _examples(media):
                if path == "/api/v1/workflows/generate":  # the model answers with the workflow example's graph
                    fake_openai_app.reply_json({"name": "Greet a sign-up", "description": "Greets the caller",
                                                **copy.deepcopy(examples.GREETER_GRAPH)})
                url = _url(path, scene)
                response = _send(client, method, url, media_type, _replace_placeholders(value, scene),
                                 scene["headers"])
                sent.append((method, path, media_type))
                if not 200 <= response.status_code < 300:
                    problems.append(f"{method.upper()} {url} {media_type}: {response.status_code} "
                                    f"{response.get_data(as_text=True)[:300]}")
    assert not problems, "\n".join(problems)
    assert {(method, path) for method, path, _ in sent} == set(BODY_OPERATIONS)


def test_an_unreplaced_placeholder_is_a_404_not_a_validation_error(client):
    owner = make_user()
    make_workspace(owner)
    headers = headers_for(owner)
    for url, body in (("/api/v1/workflows", examples.WORKFLOW_CREATE["default"]["value"]),
                      ("/api/v1/workflow-executions", examples.EXECUTION_CREATE["default"]["value"])):
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 404, response.json


def test_the_workflow_example_answers_the_webhook_example(client, worker):
    owner = make_user()
    workspace = make_workspace(owner)
    headers = headers_for(owner)
    body = _replace_placeholders(examples.WORKFLOW_CREATE["default"]["value"], {"workspace": workspace.uuid,
                                                                               "workflow": ""})
    created = client.post("/api/v1/workflows", json=body, headers=headers)
    assert created.status_code == 201, created.json
    webhook = f"/api/v1/workflows/{created.json['data']['uuid']}/webhook"
    answer = client.post(webhook, query_string={"wait": "true", "timeout": "60"},
                         json=examples.WEBHOOK_BODY["content"]["application/json"]["examples"]["default"]["value"],
                         headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500] + worker.read_log()[-2000:]
    assert answer.json == {"message": "Welcome, Ada Lovelace!", "email": "ada@example.com", "plan": "pro"}


def test_the_webhook_takes_what_its_body_documents(client, spec):
    """Any JSON value, a form, text; and no body at all."""
    owner = make_user()
    workflow = make_workflow(make_workspace(owner), owner, nodes=copy.deepcopy(examples.GREETER_GRAPH["nodes"]),
                             edges=copy.deepcopy(examples.GREETER_GRAPH["edges"]))
    url, headers = f"/api/v1/workflows/{workflow.uuid}/webhook", headers_for(owner)
    for value in ([1, "two"], "text", 3.5, True, {}, examples.SIGN_UP):
        response = client.post(url, json=value, headers=headers)
        assert response.status_code == 202, (value, response.json)
    assert client.post(url, data=examples.SIGN_UP, headers=headers).status_code == 202
    assert client.post(url, data="hello", content_type="text/plain", headers=headers).status_code == 202
    assert client.post(url, headers=headers).status_code == 202
    # a bare JSON null is JSON too: the trigger's body is null
    assert client.post(url, data="null", content_type="application/json", headers=headers).status_code == 202
    # NUL cannot be stored (PostgreSQL): refused whatever the content type
    for content_type in ("text/plain", "application/octet-stream"):
        response = client.post(url, data="a\x00b", content_type=content_type, headers=headers)
        assert response.status_code == 422, (content_type, response.json)
