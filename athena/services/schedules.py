"""Schedule triggers: one RQ job per tick, exactly one execution per tick.

- **Ticks** are RQ jobs ``jobs.schedules.run_tick(workflow_id, tick_epoch)`` scheduled with
  ``Queue.enqueue_at`` under the deterministic id ``athena-sched-<workflow uuid>-<tick epoch>``
  (``unique=True``: arming an already armed tick is a no-op). A firing tick arms the next one.
- **Arming** happens on workflow create/update (incl. activation) via :func:`sync`; a periodic
  :func:`reconcile` pass re-arms schedules whose next tick is missing (e.g. Redis was flushed).
- **Validity** is re-checked by every tick: the workflow must exist, be active, not deleted, and
  its *current* schedule node must have this instant as one of its ticks. Otherwise the tick does
  nothing and arms nothing, so deactivating/deleting or changing the cron ends the old chain.
- **Exactly once**: :func:`claim` = Redis ``SET NX`` on ``athena:sched:claim:<uuid>:<epoch>``
  (mutual exclusion between workers, schedulers, reconcile passes) + a durable database check
  (no ``schedule`` execution with that ``scheduled_at`` yet) for claims lost with Redis.
- **Missed ticks** collapse: a tick job that runs when a later tick is already due fires that
  latest tick instead, so after any outage at most one catch-up execution runs."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
from sqlalchemy import Text, cast, select

from athena.engine.nodes.schedule import (
    DEFAULT_TIMEZONE, cron_problem, is_tick, latest_tick, next_tick, timezone_problem,
)
from athena.errors import Invalid
from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution
from athena.redis_client import RedisNotConfigured, get_queue, get_redis
from athena.services.executions import create_execution
from athena.timeutil import iso

TICK_FUNCTION = "jobs.schedules.run_tick"
NODE_TYPE = "schedule"
RECONCILE_BATCH = 500

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Spec:
    """A workflow's schedule: cron fields read in an IANA time zone."""

    cron: str
    tz: str

    def latest(self, at: datetime) -> datetime:
        return latest_tick(self.cron, self.tz, at)

    def next(self, at: datetime) -> datetime:
        return next_tick(self.cron, self.tz, at)

    def has_tick(self, moment: datetime) -> bool:
        return is_tick(self.cron, self.tz, moment)


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _epoch(moment: datetime) -> int:
    return int(_aware(moment).timestamp())


def tick_job_id(workflow_uuid: str, tick: datetime | int) -> str:
    epoch = tick if isinstance(tick, int) else _epoch(tick)
    return f"athena-sched-{workflow_uuid}-{epoch}"


def claim_key(workflow_uuid: str, tick: datetime) -> str:
    return f"athena:sched:claim:{workflow_uuid}:{_epoch(tick)}"


# -- validation (workflow writes) --------------------------------------------------------------
def schedule_nodes(nodes: Any) -> list[dict[str, Any]]:
    return [n for n in nodes or [] if isinstance(n, dict) and n.get("type") == NODE_TYPE]


def validate_nodes(nodes: Any) -> None:
    """422 unless every schedule node has a literal valid cron and time zone; at most one."""
    found = schedule_nodes(nodes)
    errors: dict[str, list[str]] = {}
    if len(found) > 1:
        errors["nodes"] = [f"a workflow may have at most one schedule node (found {len(found)})"]
    for node in found:
        params = node.get("parameters") or {}
        node_id = node.get("id")
        for name, problem in (("cron", cron_problem(params.get("cron"))),
                              ("timezone", timezone_problem(params.get("timezone", DEFAULT_TIMEZONE)))):
            if problem:
                errors.setdefault(f"nodes.{node_id}.parameters.{name}", []).append(
                    f"node '{node_id}': parameter '{name}': {problem}")
    if errors:
        raise Invalid(next(iter(errors.values()))[0], errors=errors)


def spec_of(workflow: Workflow | None) -> Spec | None:
    """The schedule a workflow should tick on now (None: inactive, deleted or no schedule)."""
    if workflow is None or workflow.deleted_at is not None or not workflow.is_active:
        return None
    found = schedule_nodes(workflow.nodes)
    if len(found) != 1:
        return None
    params = found[0].get("parameters") or {}
    cron, tz = params.get("cron"), params.get("timezone", DEFAULT_TIMEZONE)
    if cron_problem(cron) or timezone_problem(tz):
        return None
    return Spec(cron.strip(), tz.strip())


# -- arming ------------------------------------------------------------------------------------
def _job_options() -> dict[str, Any]:
    return {"job_timeout": 300, "result_ttl": 3600, "failure_ttl": 7 * 24 * 3600}


def arm(workflow: Workflow, spec: Spec, after: datetime | None = None) -> datetime:
    """Schedule the first tick strictly after ``after`` (now); a no-op if already armed."""
    at = spec.next(_aware(after))
    try:
        get_queue().enqueue_at(at, TICK_FUNCTION, workflow.id, _epoch(at), job_id=tick_job_id(workflow.uuid, at),
                               unique=True, **_job_options())
    except DuplicateJobError:
        pass
    return at


def is_armed(workflow: Workflow, at: datetime) -> bool:
    registry = get_queue().scheduled_job_registry
    return get_redis().zscore(registry.key, tick_job_id(workflow.uuid, at)) is not None


def disarm(workflow: Workflow, spec: Spec, now: datetime | None = None) -> None:
    """Drop the pending next tick of ``spec`` (tidiness: a stale tick would do nothing anyway)."""
    job_id = tick_job_id(workflow.uuid, spec.next(_aware(now)))
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except Exception:  # noqa: BLE001 - no such job
        return
    if job.get_status(refresh=False) == JobStatus.SCHEDULED:
        get_queue().scheduled_job_registry.remove(job, delete_job=True)


def sync(workflow: Workflow, previous: Spec | None) -> None:
    """After a workflow write: drop the old schedule's next tick if it changed, arm the new one.
    Redis trouble never fails the write: the reconcile pass arms what is missing."""
    current = spec_of(workflow)
    try:
        if previous is not None and previous != current:
            disarm(workflow, previous)
        if current is not None:
            arm(workflow, current)
    except (RedisError, RedisNotConfigured):
        log.exception("schedules: could not arm workflow %s (the reconcile pass will)", workflow.uuid)


# -- firing ------------------------------------------------------------------------------------
def already_fired(workflow: Workflow, tick: datetime) -> bool:
    return db.session.execute(
        select(WorkflowExecution.id).where(
            WorkflowExecution.workflow_id == workflow.id, WorkflowExecution.mode == "schedule",
            WorkflowExecution.input["scheduled_at"].as_string() == iso(tick),
        ).limit(1)
    ).first() is not None


def claim(workflow: Workflow, tick: datetime) -> bool:
    """True for exactly one caller per (workflow, tick)."""
    ttl = int(current_app.config["SCHEDULE_CLAIM_TTL_SECONDS"])
    if not get_redis().set(claim_key(workflow.uuid, tick), "1", nx=True, ex=ttl):
        return False
    return not already_fired(workflow, tick)


def fire_tick(workflow_id: int, tick_epoch: int, *, now: datetime | None = None) -> str:
    """The body of a tick job: maybe create one ``schedule`` execution, arm the next tick."""
    moment = _aware(now)
    workflow = db.session.get(Workflow, workflow_id)
    spec = spec_of(workflow)
    if spec is None:
        return "inactive"
    tick = datetime.fromtimestamp(int(tick_epoch), timezone.utc)
    if not spec.has_tick(tick):
        return "not a tick"  # the schedule changed: this chain ends here
    effective = max(tick, spec.latest(moment))  # a late tick collapses into the latest due one
    arm(workflow, spec, after=max(moment, effective))
    if not claim(workflow, effective):
        db.session.rollback()
        return "duplicate"
    owner = db.session.get(User, workflow.user_id)
    try:
        create_execution(workflow, owner, mode="schedule",
                         input={"scheduled_at": iso(effective), "fired_at": iso(moment)})
    except Exception:
        db.session.rollback()
        get_redis().delete(claim_key(workflow.uuid, effective))  # let a retry / reconcile fire it
        raise
    return "fired" if effective == tick else "fired (catch-up)"


# -- reconcile ---------------------------------------------------------------------------------
def _candidates() -> list[Workflow]:
    """Active workflows whose nodes mention "schedule" (a cheap prefilter; spec_of decides)."""
    found: list[Workflow] = []
    last_id = 0
    while True:
        batch = list(db.session.execute(
            select(Workflow).where(
                Workflow.id > last_id, Workflow.deleted_at.is_(None), Workflow.is_active.is_(True),
                cast(Workflow.nodes, Text).like('%"schedule"%'),
            ).order_by(Workflow.id).limit(RECONCILE_BATCH)
        ).scalars())
        found.extend(batch)
        if len(batch) < RECONCILE_BATCH:
            return found
        last_id = batch[-1].id


def catch_up(workflow: Workflow, spec: Spec, now: datetime) -> bool:
    """Fire the latest due tick if it was missed: after the workflow's last change (or last run,
    which bumps ``updated_at``) and never claimed nor fired. At most one per workflow."""
    last = spec.latest(now)
    if last <= _aware(workflow.updated_at or workflow.created_at):
        return False
    if get_redis().exists(claim_key(workflow.uuid, last)) or already_fired(workflow, last):
        return False
    try:
        get_queue().enqueue(TICK_FUNCTION, workflow.id, _epoch(last), job_id=tick_job_id(workflow.uuid, last),
                            unique=True, **_job_options())
    except DuplicateJobError:
        return False  # that tick's own job is still around: it will fire (or has fired)
    return True


def reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Re-arm every schedule whose next tick is not scheduled; catch up one missed tick."""
    moment = _aware(now)
    result = {"checked": 0, "armed": 0, "caught_up": 0}
    for workflow in _candidates():
        spec = spec_of(workflow)
        if spec is None:
            continue
        result["checked"] += 1
        if is_armed(workflow, spec.next(moment)):
            continue
        arm(workflow, spec, after=moment)
        result["armed"] += 1
        result["caught_up"] += int(catch_up(workflow, spec, moment))
    db.session.rollback()
    return result
