"""Trigger a webhook (API Reference -> Workflow -> Trigger a webhook)."""
from __future__ import annotations


from flask import Response, after_this_request, current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from athena.api import examples
from athena.api.base import ErrorSchema, envelope
from athena.api.webhook_auth import claim_signature, webhook_caller
from athena.auth import SECURITY, current_user
from athena.schemas.executions import ExecutionSchema, WebhookArgsSchema
from athena.services import webhook_calls
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
        answer = webhook_calls.call(workflow, current_user(), webhook_payload(), wait=args["wait"],
                                    timeout=args.get("timeout") or current_app.config["WEBHOOK_WAIT_TIMEOUT"],
                                    expire_later=after_this_request)
        if answer.custom is not None:
            status, headers, body = answer.custom
            return Response(body, status=status, headers=headers)
        if not args["wait"]:
            return {"data": answer.execution}
        return {"data": answer.execution}, 200 if answer.execution.is_finished else 202
