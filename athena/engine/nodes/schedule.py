"""Schedule trigger: starts the workflow on a cron schedule, in a time zone.

The node itself only outputs the execution's trigger data ``{"scheduled_at", "fired_at"}``;
the ticks are produced by :mod:`athena.services.schedules` (RQ's scheduler + a reconcile pass).
The cron helpers here are pure (croniter + zoneinfo) so the services and the tests share them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from marshmallow import ValidationError, fields, validates

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema
from athena.engine.nodes.registry import register
from athena.timeutil import iso

DEFAULT_TIMEZONE = "UTC"
MAX_CRON_FIELDS = 5  # minute granularity: no seconds / years fields


def cron_problem(value: Any) -> str | None:
    """Why ``value`` is not an accepted cron expression (None when it is)."""
    if not isinstance(value, str) or not value.strip():
        return "must be a cron expression such as '*/5 * * * *'"
    text = value.strip()
    if "{{" in text or "{%" in text:
        return "must be a literal cron expression (expressions are not allowed)"
    if len(text.split()) > MAX_CRON_FIELDS:
        return f"{text!r} has more than {MAX_CRON_FIELDS} fields (seconds are not supported)"
    if not croniter.is_valid(text):
        return f"{text!r} is not a valid cron expression"
    return None


def timezone_problem(value: Any) -> str | None:
    """Why ``value`` is not an IANA time zone name (None when it is)."""
    if not isinstance(value, str) or not value.strip():
        return "must be an IANA time zone name such as 'Europe/Paris'"
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"{value!r} is not a known time zone"
    return None


def _floor_second(at: datetime) -> datetime:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).replace(microsecond=0)


def latest_tick(cron: str, tz: str, at: datetime) -> datetime:
    """The last tick at or before ``at`` (aware UTC)."""
    start = (_floor_second(at) + timedelta(seconds=1)).astimezone(ZoneInfo(tz))
    return croniter(cron.strip(), start).get_prev(datetime).astimezone(timezone.utc)


def next_tick(cron: str, tz: str, at: datetime) -> datetime:
    """The first tick strictly after ``at`` (aware UTC)."""
    start = _floor_second(at).astimezone(ZoneInfo(tz))
    return croniter(cron.strip(), start).get_next(datetime).astimezone(timezone.utc)


def is_tick(cron: str, tz: str, moment: datetime) -> bool:
    """Whether ``moment`` is exactly one of the schedule's ticks."""
    moment = _floor_second(moment)
    return latest_tick(cron, tz, moment) == moment


class ScheduleParameters(ParametersSchema):
    cron = fields.String(required=True, metadata={
        "description": "Five-field cron expression (minute hour day month weekday), e.g. '*/5 * * * *'."})
    timezone = fields.String(load_default=DEFAULT_TIMEZONE, metadata={
        "description": "IANA time zone the cron fields are read in, e.g. 'Europe/Paris' (default UTC)."})

    @validates("cron")
    def _check_cron(self, value: str, **_: Any) -> None:
        problem = cron_problem(value)
        if problem:
            raise ValidationError(problem)

    @validates("timezone")
    def _check_timezone(self, value: str, **_: Any) -> None:
        problem = timezone_problem(value)
        if problem:
            raise ValidationError(problem)


@register
class ScheduleTrigger(NodeType):
    type = "schedule"
    pure = True
    description = "Start the workflow on a cron schedule; outputs scheduled_at and fired_at."
    Parameters = ScheduleParameters
    is_trigger = True

    def run(self, ctx: NodeContext) -> NodeResult:
        data = ctx.run.trigger_data
        if isinstance(data, dict) and "scheduled_at" in data:
            return NodeResult({"scheduled_at": data.get("scheduled_at"), "fired_at": data.get("fired_at")})
        # Started another way (by hand, retry...): no tick, but the same output shape.
        return NodeResult({"scheduled_at": None, "fired_at": iso(ctx.run.now())})
