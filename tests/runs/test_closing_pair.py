"""The closing ``execution.status`` + ``execution.finished`` pair (issue 15): written by one
function, :func:`athena.runs.lifecycle.close`, and exactly once per execution, whichever way the
execution ends: completed or failed on a worker, stopped by the API (no worker holds it) or by
the worker that notices the stop, failed by the sweeper after too many lost workers, recorded
by an inline run, or looked at again by a continuation after a stop during a hand-over."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from athena.extensions import db
from athena.models import WorkflowExecution, WorkflowExecutionData
from athena.runs.eventlog import event_log_for_app, stream_key
from athena.services.execution_run import ExecutionRun
from athena.services.recovery import recover_orphans
from athena.timeutil import utcnow
from tests.factories import headers_for, linear_graph, make_user, make_workflow, make_workspace
from tests.support.servers import wait_for

URL = "/api/v1/workflow-executions"
SAFETY = 60  # seconds: a bound on the waits (not an assertion about speed)
TERMINAL = ("completed", "failed", "cancelled")
ATHENA = Path(__file__).resolve().parents[2] / "athena"


def events_of(uuid: str) -> list[dict]:
    return event_log_for_app().read_after(stream_key(uuid), 0, count=100_000)


def assert_one_closing_pair(uuid: str, status: str) -> None:
    """Exactly one terminal ``execution.status`` and one ``execution.finished``, adjacent, last."""
    events = events_of(uuid)
    names = [e["event"] for e in events]
    terminal = [i for i, e in enumerate(events) if e["event"] == "execution.status" and e["status"] in TERMINAL]
    finished = [i for i, name in enumerate(names) if name == "execution.finished"]
    assert len(terminal) == 1 and len(finished) == 1, names
    assert finished[0] == terminal[0] + 1 == len(events) - 1, names
    assert events[terminal[0]]["status"] == events[finished[0]]["status"] == status


def finished_row(uuid: str, worker=None) -> WorkflowExecution:
    def done():
        db.session.rollback()
        row = db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid == uuid)).scalar_one()
        return row if row.is_finished else None
    return wait_for(done, timeout=SAFETY, message=f"{uuid} to finish:\n{worker.read_log()[-3000:] if worker else ''}")


def wait_until_pair_logged(uuid: str) -> None:
    wait_for(lambda: any(e["event"] == "execution.finished" for e in events_of(uuid)), timeout=SAFETY,
             message=f"the closing pair of {uuid}")


@pytest.fixture
def owner_scene():
    owner = make_user()
    return owner, make_workspace(owner), headers_for(owner)


def _start(client, headers, workflow) -> str:
    created = client.post(URL, json={"workflow_uuid": workflow.uuid}, headers=headers)
    assert created.status_code == 201, created.json
    return created.json["data"]["uuid"]


def test_completed_on_a_worker(client, worker, owner_scene):
    owner, workspace, headers = owner_scene
    uuid = _start(client, headers, make_workflow(workspace, owner, *linear_graph(3)))
    assert finished_row(uuid, worker).status == "completed"
    wait_until_pair_logged(uuid)
    assert_one_closing_pair(uuid, "completed")


def test_failed_on_a_worker(client, worker, owner_scene):
    owner, workspace, headers = owner_scene
    nodes = [{"id": "start", "type": "manual", "parameters": {}},
             {"id": "boom", "type": "stop_and_error", "parameters": {"message": "no"}}]
    workflow = make_workflow(workspace, owner, nodes, [{"id": "e", "source": "start", "target": "boom"}])
    uuid = _start(client, headers, workflow)
    assert finished_row(uuid, worker).status == "failed"
    wait_until_pair_logged(uuid)
    assert_one_closing_pair(uuid, "failed")


def test_stopped_by_the_api_while_no_worker_holds_it(client, worker, owner_scene):
    owner, workspace, headers = owner_scene
    nodes = [{"id": "start", "type": "manual", "parameters": {}},
             {"id": "w", "type": "wait", "parameters": {"seconds": 600}}]
    uuid = _start(client, headers, make_workflow(workspace, owner, nodes, [{"id": "e", "source": "start", "target": "w"}]))
    wait_for(lambda: any(e.get("status") == "waiting" for e in events_of(uuid)), timeout=SAFETY,
             message=f"the execution to wait:\n{worker.read_log()[-3000:]}")
    assert client.post(f"{URL}/{uuid}/stop", headers=headers).status_code == 200
    assert_one_closing_pair(uuid, "cancelled")


def test_stopped_while_a_worker_runs_it(client, worker, owner_scene):
    owner, workspace, headers = owner_scene
    uuid = _start(client, headers, make_workflow(workspace, owner, *linear_graph(3000)))
    wait_for(lambda: any(e["event"] == "node.finished" for e in events_of(uuid)), timeout=SAFETY,
             message=f"a node to finish:\n{worker.read_log()[-3000:]}")
    assert client.post(f"{URL}/{uuid}/stop", headers=headers).status_code == 200
    wait_until_pair_logged(uuid)
    finished_row(uuid, worker)
    assert_one_closing_pair(uuid, "cancelled")


def test_failed_by_the_sweeper_after_too_many_lost_workers(app, owner_scene):
    owner, workspace, _ = owner_scene
    workflow = make_workflow(workspace, owner, *linear_graph(2))
    # A running execution whose worker is gone (no lease) and was lost as often as allowed.
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workspace.id, user_id=owner.id,
                                  status="running", mode="manual", started_at=utcnow(),
                                  crash_count=app.config["EXECUTION_MAX_CRASHES"])
    db.session.add(execution)
    db.session.flush()
    db.session.add(WorkflowExecutionData(workflow_execution_id=execution.id, workflow_data=[], meta={}, data={}))
    db.session.commit()
    uuid = execution.uuid
    assert recover_orphans(grace_seconds=0)["failed"] >= 1
    assert finished_row(uuid).status == "failed"
    assert_one_closing_pair(uuid, "failed")


def test_recorded_by_an_inline_run(client, owner_scene):
    owner, workspace, headers = owner_scene
    workflow = make_workflow(workspace, owner, *linear_graph(3, trigger="webhook"))
    answer = client.post(f"/api/v1/workflows/{workflow.uuid}/webhook?wait=true", json={"a": 1}, headers=headers)
    assert answer.status_code == 200 and answer.json["data"]["status"] == "completed", answer.json
    assert_one_closing_pair(answer.json["data"]["uuid"], "completed")


def test_a_continuation_of_a_stopped_execution_closes_it_once(app, owner_scene):
    """Stopped during a hand-over: the continuation finds it finished; the first one closes it,
    a second one (or the API's own close) adds nothing."""
    owner, workspace, _ = owner_scene
    workflow = make_workflow(workspace, owner, *linear_graph(2))
    execution = WorkflowExecution(workflow_id=workflow.id, workspace_id=workspace.id, user_id=owner.id,
                                  status="cancelled", is_finished=True, mode="manual", error="Stopped")
    db.session.add(execution)
    db.session.flush()
    db.session.add(WorkflowExecutionData(workflow_execution_id=execution.id, workflow_data=[], meta={}, data={}))
    db.session.commit()
    results = [ExecutionRun(execution.id, continuing=True).run() for _ in range(2)]
    assert results == ["already cancelled", "already cancelled"]
    assert_one_closing_pair(execution.uuid, "cancelled")


# -- one function writes it -------------------------------------------------------------------
def _writers() -> set[tuple[str, str]]:
    """(module, function) of every call in athena/ that sends ``execution.finished`` or the pair:
    a call whose arguments name it (the literal or ``wire.EXECUTION_FINISHED``), or a call of
    ``wire.closing_pair``."""
    found = set()
    for path in ATHENA.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for call in ast.walk(function):
                if not isinstance(call, ast.Call):
                    continue
                callee = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
                arguments = [*call.args, *(keyword.value for keyword in call.keywords)]
                names_it = any(
                    (isinstance(a, ast.Constant) and a.value == "execution.finished")
                    or (isinstance(a, ast.Attribute) and a.attr == "EXECUTION_FINISHED")
                    or (isinstance(a, ast.Name) and a.id == "EXECUTION_FINISHED") for a in arguments)
                if (names_it and callee in ("queue", "emit", "append", "append_many")) or callee == "closing_pair":
                    found.add((str(path.relative_to(ATHENA.parent)), function.name))
    return found


def test_the_pair_is_written_in_exactly_one_function():
    assert _writers() == {("athena/runs/lifecycle.py", "close")}


def test_event_names_are_spelled_only_in_the_wire_module():
    spelled = set()
    for path in ATHENA.rglob("*.py"):
        for constant in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(constant, ast.Constant) and isinstance(constant.value, str) and constant.value in (
                    "execution.status", "execution.finished", "node.started", "node.finished", "node.progress",
                    "approval.requested", "approval.decided", "llm.token", "llm.usage"):
                spelled.add(str(path.relative_to(ATHENA.parent)))
    assert spelled <= {"athena/runs/wire.py", "athena/engine/events.py", "athena/api/examples.py"}, spelled


def test_a_stop_before_the_first_write_ends_the_run_with_nothing_written(app, client, owner_scene):
    """A fresh start writes ``running`` with its first checkpoint: a stop that lands before it
    (here: between the trigger and the next node, through the API) wins; the run writes and
    logs nothing more, and the pair is the stop's."""
    from athena.services.executions import create_execution

    owner, workspace, headers = owner_scene
    workflow = make_workflow(workspace, owner, *linear_graph(4))
    execution = create_execution(workflow, owner, mode="manual", start=False)  # pending, not queued
    uuid, execution_id = execution.uuid, execution.id
    answers = []

    def stop_between_nodes() -> bool:  # the run's should_handoff: called between top-level nodes
        if not answers:
            answers.append(client.post(f"{URL}/{uuid}/stop", headers=headers).status_code)
        return False

    assert ExecutionRun(execution_id, should_handoff=stop_between_nodes).run() == "not runnable"
    assert answers == [200]
    row = finished_row(uuid)
    assert row.status == "cancelled" and row.execution_data.workflow_data == []
    assert [e["event"] for e in events_of(uuid)] == ["execution.status", "execution.status", "execution.finished"]
    assert_one_closing_pair(uuid, "cancelled")
