"""A webhook call's run: inline or through the queue, and, with ``?wait=true``, the wait for its
end (or for its ``respond_to_webhook`` node) on the execution's stream in the event log."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from athena.engine.nodes.respond_to_webhook import RespondToWebhook, render
from athena.extensions import db
from athena.models import User, Workflow, WorkflowExecution, WorkflowExecutionData
from athena.runs import wire
from athena.runs.eventlog import event_log_for_app, stream_key
from athena.services import inline
from athena.services.executions import ExpireLater, create_execution

log = logging.getLogger(__name__)
_RESPOND_NODE = f'"node_type":"{RespondToWebhook.type}"'.encode()


@dataclass
class WebhookAnswer:
    """The execution as it is when the call answers; or the custom HTTP answer of its
    ``respond_to_webhook`` node (status, headers, body bytes)."""

    execution: WorkflowExecution
    custom: tuple[int, dict[str, str], bytes] | None = None


def call(workflow: Workflow, user: User | None, payload: dict[str, Any], *, wait: bool, timeout: float,
         expire_later: ExpireLater) -> WebhookAnswer:
    """Start the workflow with ``payload`` as its trigger's output; with ``wait``, answer once it
    ends, its respond node succeeds, or ``timeout`` seconds pass (an inline run is never cut short)."""
    if wait and inline.eligible(workflow):
        execution = inline.run_inline_if_free(workflow, user, mode="webhook", input=payload, expire_later=expire_later)
        if execution is not None:
            return WebhookAnswer(execution)
    execution = create_execution(workflow, user, mode="webhook", input=payload, expire_later=expire_later)
    if not wait:
        return WebhookAnswer(execution)
    try:
        respond = wait_for_end(execution, timeout)
    except RedisError as exc:  # its events cannot be followed: answer as without wait (202)
        log.warning("webhook: cannot wait for execution %s, Redis is unreachable (%s)", execution.uuid, exc)
        return WebhookAnswer(execution)
    if respond is not None:
        return WebhookAnswer(execution, render(respond))
    db.session.refresh(execution)  # its final status and output (the workflow is still loaded)
    return WebhookAnswer(execution)


def wait_for_end(execution: WorkflowExecution, timeout: float) -> dict[str, Any] | None:
    """Follow the execution's events until it finishes or a respond_to_webhook node succeeds;
    that node's output (the custom response), or None."""
    respond: Any = None
    for event in event_log_for_app().follow(stream_key(execution.uuid), 0, timeout, want=_wanted):
        name = event["event"]
        if (name == wire.NODE_FINISHED and event.get("node_type") == RespondToWebhook.type
                and event.get("status") == "success"):
            respond = _respond_output(execution, event)
            if isinstance(respond, dict):
                break
        if name == wire.EXECUTION_FINISHED:
            break
    return respond if isinstance(respond, dict) else None


def _wanted(raw: bytes) -> bool:
    """Only the events the waiter looks at are decoded (not every node's output)."""
    name = wire.name_of(raw)
    return name == wire.EXECUTION_FINISHED or (name == wire.NODE_FINISHED and _RESPOND_NODE in raw)


def _respond_output(execution: WorkflowExecution, event: dict[str, Any]) -> Any:
    """A respond node's output: from its node.finished event, or its checkpoint if too large."""
    if not event.get("output_truncated"):
        return event.get("output")
    db.session.expire_all()
    data = db.session.execute(
        db.select(WorkflowExecutionData).where(WorkflowExecutionData.workflow_execution_id == execution.id)
    ).scalar_one_or_none()
    entries = {e.get("node_id"): e for e in (data.workflow_data if data else [])}
    return (entries.get(event.get("node_id")) or {}).get("output")
