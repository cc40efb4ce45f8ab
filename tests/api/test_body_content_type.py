"""An operation that takes a JSON body answers 415 to a body of another content type (a
`curl -d` without `Content-Type: application/json` is not silently read as "no body"); a
body-less request is never a 415; the webhook takes any type and Generate its form too."""
from __future__ import annotations

from tests.api.helpers import assert_json_error
from tests.executions.test_webhook import hook_url, webhook_graph
from tests.factories import PASSWORD, headers_for, make_user, make_workflow, make_workspace

FORM = "application/x-www-form-urlencoded"


def test_a_json_operation_refuses_another_body_type_with_415(client):
    user = make_user("curl@example.com")
    # what `curl -d '{"email": ...}'` sends: the JSON text, typed as a form
    body = f'{{"email": "curl@example.com", "password": "{PASSWORD}"}}'
    response = client.post("/api/v1/auth/sign-in", data=body, content_type=FORM)
    assert "Content-Type: application/json" in assert_json_error(response, 415)["message"]
    assert client.post("/api/v1/auth/sign-in", data=body, content_type="application/json").status_code == 200
    headers = headers_for(user)
    workspace = make_workspace(user)
    for content_type in (FORM, "text/plain", "multipart/form-data; boundary=x", "application/xml"):
        response = client.post("/api/v1/workflows", data=f'{{"workspace_uuid": "{workspace.uuid}", "name": "x"}}',
                               content_type=content_type, headers=headers)
        assert_json_error(response, 415)
        response = client.put(f"/api/v1/workspaces/{workspace.uuid}", data='{"name": "y"}', content_type=content_type,
                              headers=headers)
        assert_json_error(response, 415)


def test_body_less_requests_are_never_415(client):
    owner = make_user()
    workflow = make_workflow(make_workspace(owner), owner)
    headers = headers_for(owner)
    created = client.post("/api/v1/workflow-executions", json={"workflow_uuid": workflow.uuid}, headers=headers)
    assert created.status_code == 201, created.json
    # no body, and no Content-Type or a stray one: stop and logout take no body
    stop = client.post(f"/api/v1/workflow-executions/{created.json['data']['uuid']}/stop", headers=headers)
    assert stop.status_code == 200, stop.json
    logout = client.post("/api/v1/auth/logout", headers={**headers, "Content-Type": FORM})
    assert logout.status_code == 200, logout.json


def test_a_missing_required_body_is_422_not_415(client):
    owner = make_user()
    workspace = make_workspace(owner)
    response = client.put(f"/api/v1/workspaces/{workspace.uuid}", headers=headers_for(owner))
    assert_json_error(response, 422)


def test_the_webhook_takes_any_content_type(client):
    owner = make_user()
    nodes, edges = webhook_graph()
    workflow = make_workflow(make_workspace(owner), owner, nodes=nodes, edges=edges)
    headers = headers_for(owner)
    for content_type, data in (("text/plain", "hello"), (FORM, "email=a%40example.com"),
                               ("application/xml", "<a/>")):
        response = client.post(hook_url(workflow), data=data, content_type=content_type, headers=headers)
        assert response.status_code == 202, (content_type, response.json)


def test_generate_takes_its_form_but_not_other_types(client):
    owner = make_user()
    workspace = make_workspace(owner)
    headers = headers_for(owner)
    # the documented multipart form with empty fields: a 422 naming the fields, not a 415
    response = client.post("/api/v1/workflows/generate", data={"workspace_uuid": "", "prompt": ""},
                           content_type="multipart/form-data", headers=headers)
    assert {"workspace_uuid", "prompt"} <= set(assert_json_error(response, 422)["errors"])
    response = client.post("/api/v1/workflows/generate", data=f"workspace_uuid={workspace.uuid}",
                           content_type="text/plain", headers=headers)
    assert "multipart/form-data" in assert_json_error(response, 415)["message"]
