"""respond_to_webhook: a ``?wait=true`` webhook call answers with the node's status, headers and
body (real HTTP server, real worker); without wait, or without the node, nothing changes."""
from __future__ import annotations

import requests

from athena.engine.nodes.respond_to_webhook import render, sanitize_headers
from tests.executions.test_webhook import hook_url, stored, wait_finished
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes import API, chain, clean_rq, node, set_node, wait_status

__all__ = ["clean_rq"]  # the autouse fixture

SAFETY = 60  # seconds: a bound on waits, never a timing assertion


def _world(respond: dict, *, after: list[dict] | None = None):
    owner = make_user()
    workspace = make_workspace(owner)
    nodes = [node("hook", "webhook"),
             set_node("calc", {"total": "{{ trigger.body.qty * 3 }}", "who": "{{ trigger.body.name }}"}),
             node("reply", "respond_to_webhook", respond), *(after or [])]
    workflow = make_workflow(workspace, owner, nodes=nodes, edges=chain(*[n["id"] for n in nodes]))
    return workflow, headers_for(owner)


def test_wait_true_answers_with_the_custom_response(live_server, worker):
    workflow, headers = _world({
        "status": 201,
        "headers": {"X-Total": "{{ nodes.calc.output.total }}", "Cache-Control": "no-store",
                    "Set-Cookie": "session=planted", "Content-Length": "999", "Connection": "close",
                    "Transfer-Encoding": "chunked"},
        "body": {"total": "{{ nodes.calc.output.total }}", "greeting": "hi {{ nodes.calc.output.who }}"},
    })
    response = requests.post(live_server.url + hook_url(workflow, "wait=true"), json={"qty": 4, "name": "Ada"},
                             headers=headers, timeout=SAFETY)
    assert response.status_code == 201, response.text
    assert response.headers["X-Total"] == "12" and response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"
    assert "Set-Cookie" not in response.headers and "Transfer-Encoding" not in response.headers
    assert response.headers["Content-Length"] == str(len(response.content))
    assert response.json() == {"total": 12, "greeting": "hi Ada"}


def test_text_bodies_and_the_node_output(client, worker):
    workflow, headers = _world({"status": 202, "body": "total={{ nodes.calc.output.total }}",
                                "headers": {"Content-Type": "text/csv"}})
    response = client.post(hook_url(workflow, "wait=true"), json={"qty": 1, "name": "x"}, headers=headers)
    assert response.status_code == 202 and response.get_data(as_text=True) == "total=3"
    assert response.headers["Content-Type"] == "text/csv"

    plain, headers = _world({"body": "{{ nodes.calc.output.total }} items"})
    response = client.post(hook_url(plain, "wait=true"), json={"qty": 2, "name": "x"}, headers=headers)
    assert response.status_code == 200 and response.get_data(as_text=True) == "6 items"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_without_wait_it_is_the_usual_202(client, worker):
    workflow, headers = _world({"status": 201, "body": {"ok": True}})
    response = client.post(hook_url(workflow), json={"qty": 1, "name": "x"}, headers=headers)
    assert response.status_code == 202, response.json
    data = response.json["data"]
    assert data["status"] == "pending" and data["mode"] == "webhook"
    assert wait_finished(data["uuid"], worker)["status"] == "completed"
    entry = next(e for e in stored(data["uuid"]).execution_data.workflow_data if e["node_id"] == "reply")
    assert entry["output"] == {"status": 201, "headers": {}, "body": {"ok": True}}


def test_the_answer_comes_when_the_node_finishes_not_the_execution(client, worker):
    workflow, headers = _world({"status": 200, "body": {"accepted": True}},
                               after=[node("later", "wait", {"seconds": 3600})])
    response = client.post(hook_url(workflow, "wait=true"), json={"qty": 1, "name": "x"}, headers=headers)
    assert response.status_code == 200 and response.json == {"accepted": True}
    [execution] = client.get(f"{API}?workflow_uuid={workflow.uuid}", headers=headers).json["data"]
    waiting = wait_status(client, headers, execution["uuid"], "waiting", worker)
    assert waiting["is_finished"] is False  # still waiting an hour: the caller already has its answer
    assert client.post(f"{API}/{execution['uuid']}/stop", headers=headers).status_code == 200


def test_header_injection_fails_the_node(client, worker):
    workflow, headers = _world({"headers": {"X-Echo": "{{ trigger.body.name }}"}, "body": "ok"})
    response = client.post(hook_url(workflow, "wait=true"), json={"qty": 1, "name": "a\r\nSet-Cookie: x=y"},
                           headers=headers)
    assert response.status_code == 200, response.json  # no custom response: the failed execution
    data = response.json["data"]
    assert data["status"] == "failed" and "line breaks" in data["error"]
    assert "Set-Cookie" not in response.headers and "X-Echo" not in response.headers


def test_invalid_parameters_are_422(client):
    owner = make_user()
    workspace = make_workspace(owner)
    for params in ({"status": 99}, {"status": 700}, {"headers": "nope"}):
        response = client.post("/api/v1/workflows", headers=headers_for(owner), json={
            "workspace_uuid": workspace.uuid, "name": "Bad",
            "nodes": [node("hook", "webhook"), node("reply", "respond_to_webhook", params)],
            "edges": chain("hook", "reply")})
        assert response.status_code == 422, (params, response.json)
        assert any(key.startswith("nodes.reply.parameters") for key in response.json["errors"]), response.json


def test_render_and_sanitize_are_defensive():
    assert sanitize_headers({"X-A": 1, "Keep-Alive": "5", "Set-Cookie": "a=b", "X-B": None}) == {"X-A": "1"}
    assert sanitize_headers({"Bad Name": "x", "X-Ok": "y", "X-Nl": "a\nb"}, strict=False) == {"X-Ok": "y"}
    status, headers, body = render({"status": "500", "headers": {"X-Nl": "a\r\nb"}, "body": [1, "é"]})
    assert status == 200 and headers == {"Content-Type": "application/json"}
    assert body == '[1, "é"]'.encode()
    assert render({"status": 204, "body": None}) == (204, {"Content-Type": "text/plain; charset=utf-8"}, b"")
