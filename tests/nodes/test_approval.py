"""The approval node (human review) through the real worker and the approvals API."""
from __future__ import annotations

import threading

import requests

from athena.runs.eventlog import event_log_for_app, workspace_stream_key
from athena.models import WorkflowApproval
from jobs.sweeper import sweep
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes import (
    API, TERMINAL, chain, clean_rq, edge, entries, events, execution_row, fetch, manual, node, set_node, start,
    wait_status,
)

__all__ = ["clean_rq"]  # the autouse fixture


def _world(**approval: object):
    owner, editor, viewer, stranger = make_user(), make_user(), make_user(), make_user()
    workspace = make_workspace(owner, members={editor: "editor", viewer: "viewer"})
    make_workspace(stranger)
    parameters = {"message": "Ship version {{ trigger.version }}?", **approval}
    nodes = [manual(), node("review", "approval", parameters), set_node("yes", {"shipped": True}),
             set_node("no", {"shipped": False})]
    edges = [*chain("start", "review"), edge("review", "yes", "approved"), edge("review", "no", "rejected")]
    workflow = make_workflow(workspace, owner, nodes=nodes, edges=edges)
    return {"workflow": workflow, "workspace": workspace, "owner": owner, "editor": editor,
            "headers": headers_for(owner), "editor_headers": headers_for(editor),
            "viewer_headers": headers_for(viewer), "stranger_headers": headers_for(stranger)}


def _paused(client, world, worker) -> tuple[str, dict]:
    uuid = start(client, world["headers"], world["workflow"], {"version": 3})
    wait_status(client, world["headers"], uuid, "paused", worker)
    listed = client.get(f"{API}/{uuid}/approvals", headers=world["headers"])
    assert listed.status_code == 200, listed.json
    [approval] = listed.json["data"]
    return uuid, approval


def _decide(client, headers, uuid, approval, verb, comment=None):
    body = {"comment": comment} if comment is not None else {}
    return client.post(f"{API}/{uuid}/approvals/{approval['id']}/{verb}", json=body, headers=headers)


def test_pauses_with_a_pending_approval(client, worker):
    world = _world()
    uuid, approval = _paused(client, world, worker)
    assert approval["status"] == "pending" and approval["node_id"] == "review"
    assert approval["message"] == "Ship version 3?" and approval["decided_by"] is None
    assert approval["workflow_execution_uuid"] == uuid
    data = fetch(client, world["headers"], uuid)
    assert data["requires_human_review"] is True and data["pending_workflow_approvals_count"] == 1
    assert data["wait_till"] is None and entries(data)["review"]["status"] == "paused"
    requested = [e for e in events(uuid) if e["event"] == "approval.requested"]
    assert len(requested) == 1 and requested[0]["approval_id"] == approval["id"]
    workspace_events = event_log_for_app().read_after(workspace_stream_key(world["workspace"].uuid), 0,
                                                      workspace=True)
    assert any(e["event"] == "approval.requested" and e["execution_uuid"] == uuid for e in workspace_events)


def test_approve_routes_to_approved_with_decision_comment_and_user(client, worker):
    world = _world()
    uuid, approval = _paused(client, world, worker)
    response = _decide(client, world["editor_headers"], uuid, approval, "approve", "LGTM")
    assert response.status_code == 200, response.json
    decided = response.json["data"]
    assert decided["status"] == "approved" and decided["comment"] == "LGTM"
    assert decided["decided_by"]["email"] == world["editor"].email and decided["decided_at"]

    data = wait_status(client, world["headers"], uuid, TERMINAL, worker)
    assert data["status"] == "completed", data
    output = entries(data)["review"]["output"]
    assert output["decision"] == "approved" and output["comment"] == "LGTM" and output["timed_out"] is False
    assert output["user"] == {"uuid": world["editor"].uuid, "email": world["editor"].email,
                              "name": world["editor"].name}
    assert entries(data)["review"]["handle"] == "approved"
    assert entries(data)["yes"]["status"] == "success" and entries(data)["no"]["status"] == "skipped"
    assert data["requires_human_review"] is False and data["pending_workflow_approvals_count"] == 0
    assert [e["decision"] for e in events(uuid) if e["event"] == "approval.decided"] == ["approved"]

    again = _decide(client, world["headers"], uuid, approval, "reject")
    assert again.status_code == 409, again.json


def test_reject_routes_to_rejected(client, worker):
    world = _world()
    uuid, approval = _paused(client, world, worker)
    response = _decide(client, world["headers"], uuid, approval, "reject", "not today")
    assert response.status_code == 200 and response.json["data"]["status"] == "rejected"
    assert _decide(client, world["editor_headers"], uuid, approval, "approve").status_code == 409
    data = wait_status(client, world["headers"], uuid, TERMINAL, worker)
    assert data["status"] == "completed", data
    assert entries(data)["review"]["output"]["decision"] == "rejected"
    assert entries(data)["no"]["output"] == {"shipped": False} and entries(data)["yes"]["status"] == "skipped"


def test_twenty_concurrent_decisions_exactly_one_wins(client, worker, live_server):
    world = _world()
    uuid, approval = _paused(client, world, worker)
    codes: list[int] = []
    barrier = threading.Barrier(20)

    def decide(i: int) -> None:
        verb = "approve" if i % 2 else "reject"
        barrier.wait()
        response = requests.post(f"{live_server.url}{API}/{uuid}/approvals/{approval['id']}/{verb}",
                                 json={"comment": f"call {i}"}, headers=world["headers"], timeout=60)
        codes.append(response.status_code)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert sorted(codes) == [200] + [409] * 19, codes

    data = wait_status(client, world["headers"], uuid, TERMINAL, worker)
    row = execution_row(uuid)
    [stored] = WorkflowApproval.query.filter_by(workflow_execution_id=row.id).all()
    assert data["status"] == "completed"
    assert entries(data)["review"]["output"]["decision"] == stored.status
    assert entries(data)["review"]["output"]["comment"] == stored.comment
    assert len([e for e in events(uuid) if e["event"] == "approval.decided"]) == 1


def test_timeout_applies_the_default_decision(client, worker):
    world = _world(timeout_seconds=1, default_decision="rejected")
    uuid, approval = _paused(client, world, worker)
    assert approval["timeout_at"] and approval["default_decision"] == "rejected"
    data = wait_status(client, world["headers"], uuid, TERMINAL, worker)
    assert data["status"] == "completed", data
    output = entries(data)["review"]["output"]
    assert output["decision"] == "rejected" and output["timed_out"] is True and output["user"] is None
    assert entries(data)["no"]["status"] == "success"
    [stored] = client.get(f"{API}/{uuid}/approvals", headers=world["headers"]).json["data"]
    assert stored["status"] == "rejected" and stored["decided_by"] is None
    assert _decide(client, world["headers"], uuid, approval, "approve").status_code == 409
    assert data["requires_human_review"] is False


def test_timeout_without_default_fails_the_node(client, worker):
    world = _world(timeout_seconds=1)
    uuid, approval = _paused(client, world, worker)
    data = wait_status(client, world["headers"], uuid, TERMINAL, worker)
    assert data["status"] == "failed" and "approval timed out" in data["error"], data
    [stored] = client.get(f"{API}/{uuid}/approvals", headers=world["headers"]).json["data"]
    assert stored["status"] == "expired"
    assert _decide(client, world["headers"], uuid, approval, "approve").status_code == 409


def test_viewer_is_forbidden_and_another_workspace_is_not_found(client, worker):
    world = _world()
    uuid, approval = _paused(client, world, worker)
    assert _decide(client, world["viewer_headers"], uuid, approval, "approve").status_code == 403
    assert client.get(f"{API}/{uuid}/approvals", headers=world["viewer_headers"]).status_code == 200
    assert _decide(client, world["stranger_headers"], uuid, approval, "approve").status_code == 404
    assert client.get(f"{API}/{uuid}/approvals", headers=world["stranger_headers"]).status_code == 404
    assert client.post(f"{API}/{uuid}/approvals/999999/approve", json={},
                       headers=world["headers"]).status_code == 404
    assert fetch(client, world["headers"], uuid)["status"] == "paused"  # nothing was decided
    assert _decide(client, world["headers"], uuid, approval, "approve", "ok").status_code == 200
    assert wait_status(client, world["headers"], uuid, TERMINAL, worker)["status"] == "completed"


def test_stop_while_paused(client, worker):
    world = _world()
    uuid, approval = _paused(client, world, worker)
    stopped = client.post(f"{API}/{uuid}/stop", headers=world["headers"])
    assert stopped.status_code == 200 and stopped.json["data"]["status"] == "cancelled"
    assert _decide(client, world["headers"], uuid, approval, "approve").status_code == 409
    listed = client.get(f"{API}/{uuid}/approvals", headers=world["headers"]).json["data"]
    assert [a["status"] for a in listed] == ["cancelled"]  # closed by the stop itself
    assert sweep()["approvals_cancelled"] == 0
    data = fetch(client, world["headers"], uuid)
    assert data["status"] == "cancelled" and data["requires_human_review"] is False
    assert "yes" not in entries(data) and "no" not in entries(data)


def test_bad_approval_parameters_are_422_at_workflow_write(client):
    user = make_user()
    workspace = make_workspace(user)
    for parameters in ({"message": "ok?", "default_decision": "maybe"}, {"message": "ok?", "timeout_seconds": 0},
                       {"default_decision": "approved"}):
        response = client.post("/api/v1/workflows", headers=headers_for(user), json={
            "workspace_uuid": workspace.uuid, "name": "bad approval",
            "nodes": [manual(), node("a", "approval", parameters)], "edges": chain("start", "a")})
        assert response.status_code == 422, (parameters, response.json)
        assert any(key.startswith("nodes.a.parameters") for key in response.json["errors"]), response.json
