"""The schedule trigger: validation, arming in RQ's scheduled registry, exactly one execution per
tick (direct calls and real RQ jobs on the real worker), stop on deactivate/delete, re-arm on
update, and the reconcile pass (re-arm + one catch-up). Tick times are computed, never waited."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from athena.extensions import db
from athena.models import Workflow, WorkflowExecution
from athena.redis_client import get_queue, get_redis
from athena.services.schedules import TICK_FUNCTION, fire_tick, reconcile, tick_job_id
from athena.timeutil import iso
from jobs.schedules import RECONCILE_LOCK
from tests.factories import headers_for, make_user, make_workspace
from tests.nodes import clean_rq, entries, job_result, node, set_node, wait_status

__all__ = ["clean_rq"]  # the autouse fixture

WORKFLOWS = "/api/v1/workflows"


@pytest.fixture(autouse=True)
def _hold_reconcile_lock():
    """Hold the cluster-wide reconcile lock: the worker's periodic pass skips, only ours run."""
    get_redis().set(RECONCILE_LOCK, "test", ex=600)
    yield
    get_redis().delete(RECONCILE_LOCK)


def _graph(cron: str, tz: str | None = None) -> tuple[list[dict], list[dict]]:
    params = {"cron": cron} if tz is None else {"cron": cron, "timezone": tz}
    nodes = [node("tick", "schedule", params),
             set_node("after", {"at": "{{ trigger.scheduled_at }}", "mode": "{{ execution.mode }}"})]
    return nodes, [{"id": "e1", "source": "tick", "target": "after"}]


def _create(client, headers: dict, workspace, cron: str, tz: str | None = None) -> dict:
    nodes, edges = _graph(cron, tz)
    response = client.post(WORKFLOWS, json={"workspace_uuid": workspace.uuid, "name": "Cron",
                                            "nodes": nodes, "edges": edges}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["data"]


def _world():
    owner = make_user()
    workspace = make_workspace(owner)
    return owner, workspace, headers_for(owner)


def _scheduled(workflow_uuid: str) -> dict[str, datetime]:
    """This workflow's tick jobs in RQ's ScheduledJobRegistry -> their scheduled time (UTC)."""
    registry = get_queue().scheduled_job_registry
    return {job_id: registry.get_scheduled_time(job_id).astimezone(timezone.utc)
            for job_id in registry.get_job_ids() if job_id.startswith(f"athena-sched-{workflow_uuid}-")}


def _schedule_executions(workflow_id: int, tick: datetime | None = None) -> list[WorkflowExecution]:
    """The workflow's schedule executions (of one tick: the worker may fire the real next one)."""
    db.session.expire_all()
    rows = db.session.execute(db.select(WorkflowExecution).where(
        WorkflowExecution.workflow_id == workflow_id, WorkflowExecution.mode == "schedule")).scalars()
    return [row for row in rows if tick is None or row.input["scheduled_at"] == iso(tick)]


def _minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _next_daily(hour: int, minute: int, tz: str, after: datetime) -> datetime:
    local = after.astimezone(ZoneInfo(tz))
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate.astimezone(timezone.utc)


def test_invalid_cron_or_timezone_is_422_naming_the_node(client):
    owner, workspace, headers = _world()
    cases = [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),          # seconds are not supported
        ({"cron": "{{ variables.cron }}"}, "cron"),  # a schedule cannot depend on run-time data
        ({"cron": ""}, "cron"),
        ({}, "cron"),
        ({"cron": "*/5 * * * *", "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"cron": "*/5 * * * *", "timezone": ""}, "timezone"),
    ]
    for params, field in cases:
        response = client.post(WORKFLOWS, headers=headers, json={
            "workspace_uuid": workspace.uuid, "name": "Bad", "nodes": [node("every5", "schedule", params)]})
        assert response.status_code == 422, (params, response.json)
        assert f"nodes.every5.parameters.{field}" in response.json["errors"], (params, response.json)
        assert "every5" in response.json["message"], response.json
    two = [node("a", "schedule", {"cron": "* * * * *"}), node("b", "schedule", {"cron": "0 * * * *"})]
    response = client.post(WORKFLOWS, headers=headers, json={"workspace_uuid": workspace.uuid, "name": "Two",
                                                             "nodes": two})
    assert response.status_code == 422 and "at most one schedule node" in response.json["message"]
    assert db.session.execute(db.select(db.func.count()).select_from(Workflow)).scalar_one() == 0


def test_a_tick_fires_exactly_one_schedule_execution(client, worker):
    owner, workspace, headers = _world()
    data = _create(client, headers, workspace, "* * * * *")
    workflow = db.session.execute(db.select(Workflow).where(Workflow.uuid == data["uuid"])).scalar_one()
    tick = _minute_floor(datetime.now(timezone.utc))  # the latest tick; "now" is injected: tick + 1 s
    fired_at = tick + timedelta(seconds=1)

    assert fire_tick(workflow.id, int(tick.timestamp()), now=fired_at) == "fired"
    # A second worker / scheduler / reconcile pass running the same tick: a no-op.
    assert fire_tick(workflow.id, int(tick.timestamp()), now=fired_at) == "duplicate"
    assert fire_tick(workflow.id, int(tick.timestamp()), now=fired_at + timedelta(seconds=5)) == "duplicate"
    [execution] = _schedule_executions(workflow.id, tick)
    assert execution.user_id == owner.id
    assert execution.input == {"scheduled_at": iso(tick), "fired_at": iso(fired_at)}
    # ...and the next tick is armed in RQ's scheduler, under its deterministic id.
    next_tick = tick + timedelta(minutes=1)
    assert _scheduled(workflow.uuid).get(tick_job_id(workflow.uuid, next_tick)) == next_tick

    done = wait_status(client, headers, execution.uuid, ("completed", "failed", "cancelled"), worker)
    assert done["status"] == "completed" and done["mode"] == "schedule", done
    assert entries(done)["tick"]["output"] == {"scheduled_at": iso(tick), "fired_at": iso(fired_at)}
    assert entries(done)["after"]["output"] == {"at": iso(tick), "mode": "schedule"}
    # Not an instant of the schedule (e.g. a stale job of an older cron): nothing happens.
    assert fire_tick(workflow.id, int(tick.timestamp()) + 30, now=fired_at) == "not a tick"
    assert len(_schedule_executions(workflow.id, tick)) == 1


def test_late_ticks_collapse_into_one_catch_up(client, worker):
    owner, workspace, headers = _world()
    data = _create(client, headers, workspace, "* * * * *")
    workflow_id = data["id"]
    now = _minute_floor(datetime.now(timezone.utc)) + timedelta(seconds=7)
    missed = [now - timedelta(minutes=m, seconds=7) for m in (5, 4, 3)]  # three old ticks' jobs run late
    results = [fire_tick(workflow_id, int(t.timestamp()), now=now) for t in missed]
    assert results == ["fired (catch-up)", "duplicate", "duplicate"]
    [execution] = _schedule_executions(workflow_id, _minute_floor(now))  # the latest due tick
    assert all(_schedule_executions(workflow_id, t) == [] for t in missed)
    wait_status(client, headers, execution.uuid, ("completed", "failed", "cancelled"), worker)


def test_two_rq_jobs_for_one_tick_make_one_execution(client, worker):
    """Two scheduler processes enqueue the same tick (different job ids): the worker runs both."""
    owner, workspace, headers = _world()
    data = _create(client, headers, workspace, "0 0 1 1 *")  # yearly: its latest tick cannot move now
    now = datetime.now(timezone.utc)
    tick = datetime(now.year, 1, 1, tzinfo=timezone.utc)
    queue = get_queue()
    job_ids = [f"athena-sched-test-{data['uuid']}-{n}" for n in range(2)]
    for job_id in job_ids:
        queue.enqueue(TICK_FUNCTION, data["id"], int(tick.timestamp()), job_id=job_id)
    results = sorted(job_result(job_id, worker) for job_id in job_ids)
    assert results == ["duplicate", "fired"], results
    [execution] = _schedule_executions(data["id"])
    assert execution.input["scheduled_at"] == iso(tick)
    wait_status(client, headers, execution.uuid, ("completed", "failed", "cancelled"), worker)
    next_year = datetime(now.year + 1, 1, 1, tzinfo=timezone.utc)
    assert _scheduled(data["uuid"]) == {tick_job_id(data["uuid"], next_year): next_year}


def test_deactivate_and_delete_stop_the_schedule(client):
    owner, workspace, headers = _world()
    data = _create(client, headers, workspace, "0 * * * *")
    uuid, workflow_id = data["uuid"], data["id"]
    assert len(_scheduled(uuid)) == 1
    tick = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)

    assert client.put(f"{WORKFLOWS}/{uuid}", json={"is_active": False}, headers=headers).status_code == 200
    assert _scheduled(uuid) == {}
    assert fire_tick(workflow_id, int(tick.timestamp()), now=tick + timedelta(seconds=1)) == "inactive"
    assert _schedule_executions(workflow_id) == [] and _scheduled(uuid) == {}  # nothing fired, nothing re-armed

    assert client.put(f"{WORKFLOWS}/{uuid}", json={"is_active": True}, headers=headers).status_code == 200
    assert len(_scheduled(uuid)) == 1  # activation re-arms

    assert client.delete(f"{WORKFLOWS}/{uuid}", headers=headers).status_code == 204
    assert _scheduled(uuid) == {}
    assert fire_tick(workflow_id, int(tick.timestamp()), now=tick + timedelta(seconds=1)) == "inactive"
    assert _schedule_executions(workflow_id) == [] and _scheduled(uuid) == {}
    assert reconcile()["checked"] == 0  # a deleted workflow is never re-armed


def test_updating_the_cron_rearms_at_the_new_time(client):
    owner, workspace, headers = _world()
    data = _create(client, headers, workspace, "0 3 * * *", "Europe/Paris")
    uuid = data["uuid"]
    expected = _next_daily(3, 0, "Europe/Paris", datetime.now(timezone.utc))
    assert _scheduled(uuid) == {tick_job_id(uuid, expected): expected}

    nodes, edges = _graph("30 4 * * *")  # now 04:30 UTC (timezone defaults to UTC)
    assert client.put(f"{WORKFLOWS}/{uuid}", json={"nodes": nodes, "edges": edges},
                      headers=headers).status_code == 200
    new_expected = _next_daily(4, 30, "UTC", datetime.now(timezone.utc))
    assert _scheduled(uuid) == {tick_job_id(uuid, new_expected): new_expected}  # the old tick is gone
    # A leftover job of the old cron does nothing and arms nothing.
    assert fire_tick(data["id"], int(expected.timestamp()), now=expected + timedelta(seconds=1)) == "not a tick"
    assert _scheduled(uuid) == {tick_job_id(uuid, new_expected): new_expected}
    assert _schedule_executions(data["id"]) == []
    # An update that does not touch the schedule keeps the same single tick.
    assert client.put(f"{WORKFLOWS}/{uuid}", json={"name": "Renamed"}, headers=headers).status_code == 200
    assert _scheduled(uuid) == {tick_job_id(uuid, new_expected): new_expected}


def test_reconcile_rearms_a_lost_tick_and_catches_up_once(client, worker):
    owner, workspace, headers = _world()
    data = _create(client, headers, workspace, "0 * * * *")  # hourly
    uuid, workflow_id = data["uuid"], data["id"]
    [armed] = _scheduled(uuid)
    assert reconcile() == {"checked": 1, "armed": 0, "caught_up": 0}  # healthy: nothing to do

    # Redis lost the tick (flushed) and the workflow last changed two hours ago.
    get_queue().scheduled_job_registry.remove(armed, delete_job=True)
    db.session.execute(update(Workflow).where(Workflow.id == workflow_id)
                       .values(updated_at=datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=2)))
    db.session.commit()
    now = datetime.now(timezone.utc)
    missed = now.replace(minute=0, second=0, microsecond=0)
    assert reconcile(now=now) == {"checked": 1, "armed": 1, "caught_up": 1}
    assert list(_scheduled(uuid)) == [armed]  # the same next tick as before
    assert job_result(tick_job_id(uuid, missed), worker) == "fired"
    [execution] = _schedule_executions(workflow_id)
    assert execution.input["scheduled_at"] == iso(missed)
    wait_status(client, headers, execution.uuid, ("completed", "failed", "cancelled"), worker)

    # Lost again: re-armed, but that tick already ran -> no second catch-up.
    get_queue().scheduled_job_registry.remove(armed, delete_job=True)
    assert reconcile(now=now) == {"checked": 1, "armed": 1, "caught_up": 0}
    assert len(_schedule_executions(workflow_id)) == 1
    # Even with the Redis claim gone too (flushed), the database remembers the tick.
    get_redis().delete(f"athena:sched:claim:{uuid}:{int(missed.timestamp())}")
    assert fire_tick(workflow_id, int(missed.timestamp()), now=now) == "duplicate"
    assert len(_schedule_executions(workflow_id)) == 1


def test_a_new_workflow_does_not_fire_a_tick_from_before_it_existed(client):
    owner, workspace, headers = _world()
    data = _create(client, headers, workspace, "0 0 * * *")
    get_queue().scheduled_job_registry.remove(next(iter(_scheduled(data["uuid"]))), delete_job=True)
    assert reconcile() == {"checked": 1, "armed": 1, "caught_up": 0}
    assert _schedule_executions(data["id"]) == []


def test_schedule_node_in_a_manual_run_outputs_no_tick(client, worker):
    owner, workspace, headers = _world()
    data = _create(client, headers, workspace, "0 0 1 1 *")
    response = client.post("/api/v1/workflow-executions", json={"workflow_uuid": data["uuid"], "input": {}},
                           headers=headers)
    assert response.status_code == 201, response.json
    done = wait_status(client, headers, response.json["data"]["uuid"], ("completed", "failed"), worker)
    output = entries(done)["tick"]["output"]
    assert output["scheduled_at"] is None and output["fired_at"].endswith("Z")
