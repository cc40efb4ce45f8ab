"""Helpers shared by the wait / approval / sub_workflow tests (real worker, real Redis, real DB).

``clean_rq`` is a fixture: a test module that imports it gets it as an autouse fixture, so
jobs a test leaves scheduled (long waits, timeouts) never fire against a later test's rows."""
from __future__ import annotations

from typing import Any

import pytest
from rq.job import Job

from athena.runs.eventlog import event_log_for_app, stream_key
from athena.extensions import db
from athena.models import WorkflowExecution
from athena.redis_client import get_queue, get_redis
from tests.support.servers import wait_for

API = "/api/v1/workflow-executions"
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture(autouse=True)
def clean_rq():
    yield
    queue = get_queue()
    registry = queue.scheduled_job_registry
    for job_id in registry.get_job_ids():
        registry.remove(job_id, delete_job=True)
    queue.empty()


def manual(node_id: str = "start") -> dict[str, Any]:
    return {"id": node_id, "type": "manual", "parameters": {}}


def node(node_id: str, type_: str, parameters: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "parameters": parameters or {}, **extra}


def set_node(node_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return node(node_id, "set", {"fields": fields})


def edge(source: str, target: str, handle: str = "main") -> dict[str, Any]:
    return {"id": f"{source}-{handle}-{target}", "source": source, "target": target, "source_handle": handle}


def chain(*ids: str) -> list[dict[str, Any]]:
    return [edge(a, b) for a, b in zip(ids, ids[1:])]


def start(client, headers: dict[str, str], workflow, input: Any = None) -> str:  # noqa: A002
    response = client.post(API, json={"workflow_uuid": workflow.uuid, "input": input or {}}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["data"]["uuid"]


def fetch(client, headers: dict[str, str], uuid: str) -> dict[str, Any]:
    # The test client shares the test's app context, hence its session: drop what it cached.
    db.session.rollback()
    response = client.get(f"{API}/{uuid}?with=workflowExecutionData&with_count=pendingWorkflowApprovals",
                          headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"]


def entries(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["node_id"]: e for e in data["workflow_execution_data"][0]["workflow_data"]}


def metadata(data: dict[str, Any]) -> dict[str, Any]:
    return data["workflow_execution_data"][0]["metadata"]


def wait_status(client, headers: dict[str, str], uuid: str, statuses: tuple[str, ...] | str, worker,
                timeout: float = 60) -> dict[str, Any]:
    wanted = (statuses,) if isinstance(statuses, str) else statuses

    def reached():
        data = fetch(client, headers, uuid)
        return data if data["status"] in wanted else None

    return wait_for(reached, timeout=timeout, interval=0.02,
                    message=f"{uuid} to be {wanted}:\n{worker.read_log()[-4000:]}")


def events(uuid: str) -> list[dict[str, Any]]:
    return event_log_for_app().read_after(stream_key(uuid), 0, count=10_000)


def node_starts(uuid: str, node_id: str) -> int:
    return sum(1 for e in events(uuid) if e["event"] == "node.started" and e.get("node_id") == node_id)


def statuses_seen(uuid: str) -> list[str]:
    return [e["status"] for e in events(uuid) if e["event"] == "execution.status"]


def scheduled_jobs(uuid: str) -> list[str]:
    return [job_id for job_id in get_queue().scheduled_job_registry.get_job_ids()
            if job_id.startswith(f"athena-resume-{uuid}-")]


def job_result(job_id: str, worker, timeout: float = 60) -> Any:
    """Wait until an RQ job has run; its return value."""
    def done():
        job = Job.fetch(job_id, connection=get_redis())
        status = job.get_status(refresh=True)
        if status == "failed":
            raise AssertionError(f"job {job_id} failed:\n{worker.read_log()[-4000:]}")
        return job if status == "finished" else None

    return wait_for(done, timeout=timeout, message=f"job {job_id}:\n{worker.read_log()[-4000:]}").return_value()


def execution_row(uuid: str) -> WorkflowExecution:
    db.session.expire_all()
    return db.session.execute(db.select(WorkflowExecution).where(WorkflowExecution.uuid == uuid)).scalar_one()
