"""Wait: pause the run for a number of seconds or until a moment, without holding a worker.

The first run suspends the execution (``waiting`` with ``wait_till``); the job ends and the
resumption (RQ's scheduler, or the sweeper) runs the node again with ``ctx.resume`` set."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from marshmallow import ValidationError, fields, validate, validates, validates_schema

from athena.engine.context import NodeContext
from athena.engine.nodes.base import NodeResult, NodeType, ParametersSchema, Suspend
from athena.engine.nodes.registry import register
from athena.timeutil import iso, parse_iso

MAX_WAIT_SECONDS = 366 * 24 * 3600
# A resumption that arrives this early (clock skew between scheduler and worker) still counts.
EARLY_TOLERANCE_SECONDS = 1.0


def parse_moment(value: Any) -> datetime:
    """An ISO-8601 datetime (naive = UTC) as aware UTC; ValueError otherwise."""
    if isinstance(value, datetime):
        return parse_iso(iso(value))
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an ISO-8601 datetime")
    try:
        return parse_iso(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 datetime") from None


class WaitParameters(ParametersSchema):
    seconds = fields.Float(allow_nan=False, validate=validate.Range(min=0, max=MAX_WAIT_SECONDS),
                           metadata={"description": "How long to wait (exclusive with 'until')."})
    until = fields.String(metadata={"description": "ISO-8601 moment to wait for, e.g. "
                                                   "2026-02-10T14:30:00Z (exclusive with 'seconds')."})

    @validates("until")
    def _check_until(self, value: str, **_: Any) -> None:
        try:
            parse_moment(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **_: Any) -> None:
        given = [name for name in ("seconds", "until") if data.get(name) is not None]
        if len(given) != 1:
            raise ValidationError("exactly one of 'seconds' or 'until' is required")


@register
class WaitNode(NodeType):
    type = "wait"
    description = "Wait for a number of seconds or until a moment; the worker is freed meanwhile."
    Parameters = WaitParameters

    def run(self, ctx: NodeContext) -> NodeResult | Suspend:
        now = ctx.run.now()
        if ctx.resume is not None:
            target = self._resumed_target(ctx)
            if target is not None and (target - now).total_seconds() > EARLY_TOLERANCE_SECONDS:
                return Suspend("waiting", wait_till=target)  # woken too early: keep waiting
            return NodeResult({"waited_until": iso(target) if target else None, "resumed_at": iso(now)})
        params = ctx.params()
        if params.get("until") is not None:
            target = parse_moment(params["until"])
        else:
            target = now + timedelta(seconds=float(params["seconds"]))
        if target <= now:
            return NodeResult({"waited_until": iso(target), "resumed_at": iso(now)})
        return Suspend("waiting", wait_till=target)

    @staticmethod
    def _resumed_target(ctx: NodeContext) -> datetime | None:
        payload = ctx.resume if isinstance(ctx.resume, dict) else {}
        try:
            return parse_moment(payload["wait_till"]) if payload.get("wait_till") else None
        except ValueError:
            return None
