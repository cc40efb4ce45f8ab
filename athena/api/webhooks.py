"""Trigger a webhook (API Reference -> Workflow -> Trigger a webhook)."""
from __future__ import annotations

from typing import Any

from flask import Response, after_this_request, current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from redis.exceptions import RedisError

from athena.api import examples
from athena.api.base import ErrorSchema, envelope
from athena.api.webhook_auth import claim_signature, webhook_caller
from athena.auth import SECURITY, current_user
from athena.engine.nodes.respond_to_webhook import RespondToWebhook, render
from athena.eventlog import event_log_for_app, stream_key
from athena.extensions import db
from athena.models import WorkflowExecutionData
from athena.schemas.executions import ExecutionSchema, WebhookArgsSchema
from athena.services import executions as service
from athena.services import inline
from athena.services.access import get_workflow
from athena.services.rate_limit import enforce_webhook_limit

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/workflows", description="Webhook triggers")

# Credentials never become workflow data (an execution's data is readable by workspace members).
HIDDEN_HEADERS = frozenset({"authorization", "x-multiplai-authorization", "cookie", "proxy-authorization",
                            "x-athena-signature"})


def webhook_payload() -> dict:
    if request.is_json:
        body = request.get_json(silent=True)  # guard_input already refused invalid JSON; null is None
    elif request.form:
        body = request.form.to_dict(flat=True)
    else:
        raw = request.get_data(as_text=True)
        body = raw or None
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in HIDDEN_HEADERS}
    # The webhook's own parameters (WebhookArgsSchema: wait, timeout) are not the caller's data.
    own = WebhookArgsSchema._declared_fields
    query = {k: v for k, v in request.args.to_dict(flat=True).items() if k not in own}
    return {"body": body, "query": query, "headers": headers}


def _respond_output(execution, event: dict) -> Any:
    """A respond node's output: from its node.finished event, or its checkpoint if too large."""
    if not event.get("output_truncated"):
        return event.get("output")
    db.session.expire_all()
    data = db.session.execute(
        db.select(WorkflowExecutionData).where(WorkflowExecutionData.workflow_execution_id == execution.id)
    ).scalar_one_or_none()
    entries = {e.get("node_id"): e for e in (data.workflow_data if data else [])}
    return (entries.get(event.get("node_id")) or {}).get("output")


def wait_for_finish(execution, timeout: float) -> Any:
    """Follow the execution's events until it finishes or a respond_to_webhook node succeeds;
    returns that node's output (the custom response) or None."""
    log = event_log_for_app()
    respond: Any = None
    for event in log.follow(stream_key(execution.uuid), 0, timeout, want=_wanted):
        if (event["event"] == "node.finished" and event.get("node_type") == RespondToWebhook.type
                and event.get("status") == "success"):
            respond = _respond_output(execution, event)
            if isinstance(respond, dict):
                break
        if event["event"] == "execution.finished":
            break
    return respond if isinstance(respond, dict) else None


def _wanted(raw: bytes) -> bool:
    """Only the events the waiter looks at are decoded (not every node's output)."""
    return raw.startswith(b'{"event":"execution.finished"') or (
        raw.startswith(b'{"event":"node.finished"') and b'"node_type":"respond_to_webhook"' in raw)


@blp.route("/<uuid:uuid>/webhook")
class WorkflowWebhook(MethodView):
    decorators = [webhook_caller]
    other_body_types = None  # any content type: the body is the caller's data, as sent

    @blp.doc(security=SECURITY, requestBody=examples.WEBHOOK_BODY)
    @blp.arguments(WebhookArgsSchema, location="query")
    @blp.response(202, envelope(ExecutionSchema))
    @blp.alt_response(200, schema=envelope(ExecutionSchema), description="With wait=true, the finished execution")
    @blp.alt_response(409, schema=ErrorSchema, description="The workflow is inactive; or, for a signed call, "
                      "this signature was already accepted (a replay: each X-Athena-Signature is accepted once, "
                      "re-sign with a new X-Athena-Timestamp to send again). Nothing is created.")
    @blp.alt_response(503, schema=ErrorSchema, description="A signed call that cannot be checked now: the "
                      "workflow's webhook secret cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS, or "
                      "Redis cannot be asked whether the signature was already used. Nothing is created.")
    @blp.alt_response(429, schema=ErrorSchema, description="Too many calls for this workflow in the rate "
                      "window (ATHENA_WEBHOOK_RATE_LIMIT per ATHENA_WEBHOOK_RATE_WINDOW); Retry-After says when "
                      "to try again (seconds). Nothing is created.",
                      headers={"Retry-After": {"description": "Seconds until the rate window resets",
                                               "schema": {"type": "integer"}}})
    def post(self, args, uuid):
        """Trigger a webhook

        Starts the workflow with the request (body, query and headers) as its trigger's output and
        answers 202 with the execution. With wait=true it answers when the execution finishes (200,
        with its final status and output) or after timeout seconds (202); when a respond_to_webhook
        node runs, the answer is that node's status, headers and body.

        Authentication: a user token (editor or owner of the workspace), or, when the workflow has
        a webhook_secret, no token but two headers: X-Athena-Timestamp, the Unix time in seconds
        (at most 5 minutes off), and X-Athena-Signature, "sha256=" followed by the hex
        HMAC-SHA256, under the secret, of the timestamp, a dot and the raw body. A signed call's
        execution is attributed to the workflow owner.

        With wait=true, a workflow made only of pure nodes (set, transform, switch, if, filter,
        merge, noop, stop_and_error; at most ATHENA_INLINE_MAX_NODES, 50 by default) runs in the
        API process that received the call instead of on a worker: the same rows and events,
        without the round trip through the queue (timeout does not cut it short)."""
        workflow = g.signed_workflow or get_workflow(current_user(), uuid, write=True)
        if not workflow.is_active:
            abort(409, message="The workflow is inactive.")
        enforce_webhook_limit(workflow.uuid)  # after authorization (no probing), before creating anything
        claim_signature()  # a signed call's signature, once: after the 409/429 above, so they don't use it up
        if args["wait"] and inline.eligible(workflow):
            execution = inline.run_inline_if_free(workflow, current_user(), mode="webhook", input=webhook_payload(),
                                                  expire_later=after_this_request)
            if execution is not None:
                return {"data": execution}, 200 if execution.is_finished else 202
        execution = service.create_execution(workflow, current_user(), mode="webhook", input=webhook_payload(),
                                             expire_later=after_this_request)
        if not args["wait"]:
            return {"data": execution}
        timeout = args.get("timeout") or current_app.config["WEBHOOK_WAIT_TIMEOUT"]
        try:
            respond = wait_for_finish(execution, timeout)
        except RedisError as exc:  # its events cannot be followed: answer as without wait (202)
            current_app.logger.warning("webhook: cannot wait for execution %s, Redis is unreachable (%s)",
                                       execution.uuid, exc)
            return {"data": execution}, 202
        if respond is not None:
            status, headers, body = render(respond)
            return Response(body, status=status, headers=headers)
        db.session.refresh(execution)  # its final status and output (the workflow is still loaded)
        return {"data": execution}, 200 if execution.is_finished else 202
