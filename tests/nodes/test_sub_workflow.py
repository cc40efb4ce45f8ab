"""The sub_workflow node: child executions through the real worker, waits, failures, stop cascade."""
from __future__ import annotations

from sqlalchemy import select

from athena.extensions import db
from athena.models import WorkflowExecution
from tests.factories import headers_for, make_user, make_workflow, make_workspace
from tests.nodes import (
    API, TERMINAL, chain, clean_rq, edge, entries, execution_row, fetch, manual, node, set_node, start,
    statuses_seen, wait_status,
)
from tests.support.servers import wait_for

__all__ = ["clean_rq"]  # the autouse fixture


def _world():
    user = make_user()
    workspace = make_workspace(user)
    return user, workspace, headers_for(user)


def _parent(workspace, user, child_uuid: str, *, wait: bool = True, settings: dict | None = None,
            extra_nodes: list | None = None, extra_edges: list | None = None):
    sub = node("sub", "sub_workflow", {"workflow_uuid": child_uuid, "input": {"n": "{{ trigger.n }}"}, "wait": wait})
    if settings:
        sub["settings"] = settings
    nodes = [manual(), sub, set_node("after", {"from_child": "{{ nodes.sub.output }}"}), *(extra_nodes or [])]
    return make_workflow(workspace, user, nodes=nodes, edges=[*chain("start", "sub", "after"), *(extra_edges or [])])


def _doubler(workspace, user, **kw):
    nodes = [manual(), set_node("double", {"doubled": "{{ trigger.n * 2 }}"})]
    return make_workflow(workspace, user, nodes=nodes, edges=chain("start", "double"), **kw)


def _children(parent_uuid: str) -> list[WorkflowExecution]:
    parent = execution_row(parent_uuid)
    return list(db.session.execute(select(WorkflowExecution).where(
        WorkflowExecution.parent_execution_id == parent.id).order_by(WorkflowExecution.id)).scalars())


def _one_child(parent_uuid: str) -> WorkflowExecution:
    return wait_for(lambda: (_children(parent_uuid) or [None])[0], timeout=60, message="the child execution")


def test_parent_waits_for_the_child_and_gets_its_output(client, worker):
    user, workspace, headers = _world()
    child_workflow = _doubler(workspace, user)
    parent = _parent(workspace, user, child_workflow.uuid)
    uuid = start(client, headers, parent, {"n": 21})

    data = wait_status(client, headers, uuid, TERMINAL, worker)
    assert data["status"] == "completed", data
    assert "waiting" in statuses_seen(uuid)
    child = _one_child(uuid)
    assert child.mode == "child" and child.parent_node_id == "sub" and child.input == {"n": 21}
    assert child.workflow_id == child_workflow.id and child.status == "completed"
    assert entries(data)["sub"]["output"] == {"double": {"doubled": 42}} == child.output
    assert entries(data)["after"]["output"] == {"from_child": {"double": {"doubled": 42}}}
    child_data = fetch(client, headers, child.uuid)
    assert child_data["mode"] == "child" and child_data["parent_execution_uuid"] == uuid


def test_wait_false_continues_at_once(client, worker):
    user, workspace, headers = _world()
    child_workflow = _doubler(workspace, user)
    parent = _parent(workspace, user, child_workflow.uuid, wait=False)
    uuid = start(client, headers, parent, {"n": 1})
    data = wait_status(client, headers, uuid, TERMINAL, worker)
    assert data["status"] == "completed", data
    assert "waiting" not in statuses_seen(uuid)
    child = _one_child(uuid)
    assert entries(data)["sub"]["output"] == {"execution_uuid": child.uuid}
    child_data = wait_status(client, headers, child.uuid, TERMINAL, worker)
    assert child_data["status"] == "completed" and child_data["output"] == {"double": {"doubled": 2}}
    assert fetch(client, headers, uuid)["status"] == "completed"  # the child's end did not touch it


def _failing(workspace, user):
    nodes = [manual(), node("boom", "stop_and_error", {"message": "child exploded"})]
    return make_workflow(workspace, user, nodes=nodes, edges=chain("start", "boom"))


def test_child_failure_fails_the_parent_node(client, worker):
    user, workspace, headers = _world()
    parent = _parent(workspace, user, _failing(workspace, user).uuid)
    uuid = start(client, headers, parent, {"n": 1})
    data = wait_status(client, headers, uuid, TERMINAL, worker)
    assert data["status"] == "failed", data
    assert "child exploded" in data["error"] and "node 'sub'" in data["error"]
    assert entries(data)["sub"]["status"] == "error" and "after" not in entries(data)
    assert _one_child(uuid).status == "failed"


def test_child_failure_with_on_error_continue(client, worker):
    user, workspace, headers = _world()
    parent = _parent(workspace, user, _failing(workspace, user).uuid, settings={"on_error": "continue"},
                     extra_nodes=[set_node("handled", {"ok": "{{ nodes.sub.output.error }}"})],
                     extra_edges=[edge("sub", "handled", "error")])
    uuid = start(client, headers, parent, {"n": 1})
    data = wait_status(client, headers, uuid, TERMINAL, worker)
    assert data["status"] == "completed", data
    assert entries(data)["sub"]["status"] == "error" and entries(data)["after"]["status"] == "skipped"
    assert "child exploded" in entries(data)["handled"]["output"]["ok"]


def test_depth_limit(client, worker):
    user, workspace, headers = _world()
    recursive = make_workflow(workspace, user, nodes=[manual()], edges=[])
    recursive.nodes = [manual(), node("sub", "sub_workflow", {"workflow_uuid": recursive.uuid})]
    recursive.edges = chain("start", "sub")
    db.session.commit()
    uuid = start(client, headers, recursive)
    data = wait_status(client, headers, uuid, TERMINAL, worker, timeout=120)
    assert data["status"] == "failed", data
    assert "sub-workflow depth limit (5) reached" in data["error"]
    chain_of = [execution_row(uuid)]
    while children := _children(chain_of[-1].uuid):
        chain_of.append(children[0])
    assert len(chain_of) == 6  # the root and five nested children
    assert all(e.status == "failed" for e in chain_of)
    assert chain_of[-1].error.endswith("sub-workflow depth limit (5) reached")


def test_workflow_of_another_workspace_or_inactive_is_refused(client, worker):
    user, workspace, headers = _world()
    other_owner = make_user()
    foreign = _doubler(make_workspace(other_owner), other_owner)
    inactive = _doubler(workspace, user, is_active=False)
    for target, message in ((foreign, "not found in this workspace"), (inactive, "is inactive")):
        uuid = start(client, headers, _parent(workspace, user, target.uuid), {"n": 1})
        data = wait_status(client, headers, uuid, TERMINAL, worker)
        assert data["status"] == "failed" and message in data["error"], data
        assert _children(uuid) == []


def _waiting_family(client, headers, workspace, user, worker) -> tuple[str, str]:
    slow = make_workflow(workspace, user, nodes=[manual(), node("w", "wait", {"seconds": 600})],
                         edges=chain("start", "w"))
    uuid = start(client, headers, _parent(workspace, user, slow.uuid), {"n": 1})
    wait_status(client, headers, uuid, "waiting", worker)
    child = _one_child(uuid)
    wait_status(client, headers, child.uuid, "waiting", worker)
    return uuid, child.uuid


def test_stopping_the_parent_cancels_the_waiting_child(client, worker):
    user, workspace, headers = _world()
    parent_uuid, child_uuid = _waiting_family(client, headers, workspace, user, worker)
    response = client.post(f"{API}/{parent_uuid}/stop", headers=headers)
    assert response.status_code == 200 and response.json["data"]["status"] == "cancelled"
    assert fetch(client, headers, child_uuid)["status"] == "cancelled"


def test_stopping_the_child_cancels_the_waiting_parent(client, worker):
    user, workspace, headers = _world()
    parent_uuid, child_uuid = _waiting_family(client, headers, workspace, user, worker)
    response = client.post(f"{API}/{child_uuid}/stop", headers=headers)
    assert response.status_code == 200 and response.json["data"]["status"] == "cancelled"
    data = fetch(client, headers, parent_uuid)
    assert data["status"] == "cancelled" and "after" not in entries(data)


def test_bad_sub_workflow_parameters_are_422_at_workflow_write(client):
    user, workspace, headers = _world()
    for parameters in ({"input": {"a": 1}}, {"workflow_uuid": ""}, {"workflow_uuid": "x", "wait": "maybe"}):
        response = client.post("/api/v1/workflows", headers=headers, json={
            "workspace_uuid": workspace.uuid, "name": "bad sub",
            "nodes": [manual(), node("s", "sub_workflow", parameters)], "edges": chain("start", "s")})
        assert response.status_code == 422, (parameters, response.json)
        assert any(key.startswith("nodes.s.parameters") for key in response.json["errors"]), response.json
