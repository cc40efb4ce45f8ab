"""Trigger a webhook (API Reference -> Workflow -> Trigger a webhook)."""
from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from athena.api.base import envelope
from athena.auth import SECURITY, current_user, login_required
from athena.eventlog import event_log_for_app, stream_key
from athena.extensions import db
from athena.schemas.executions import ExecutionSchema, WebhookArgsSchema
from athena.services import executions as service
from athena.services.access import get_workflow

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/workflows", description="Webhook triggers")

# Credentials never become workflow data.
HIDDEN_HEADERS = frozenset({"authorization", "x-multiplai-authorization", "cookie", "proxy-authorization"})


def webhook_payload() -> dict:
    if request.is_json:
        body = request.get_json(silent=True)
        if body is None and request.get_data():
            abort(400, message="The request body is not valid JSON.")
    elif request.form:
        body = request.form.to_dict(flat=True)
    else:
        raw = request.get_data(as_text=True)
        body = raw or None
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in HIDDEN_HEADERS}
    return {"body": body, "query": request.args.to_dict(flat=True), "headers": headers}


def wait_for_finish(execution, timeout: float) -> None:
    log = event_log_for_app()
    for event in log.follow(stream_key(execution.uuid), 0, timeout):
        if event["event"] == "execution.finished":
            break
    db.session.expire_all()


@blp.route("/<uuid>/webhook")
class WorkflowWebhook(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(WebhookArgsSchema, location="query")
    @blp.response(202, envelope(ExecutionSchema))
    @blp.alt_response(200, schema=envelope(ExecutionSchema), description="With wait=true, the finished execution")
    def post(self, args, uuid):
        """Trigger a workflow by webhook; with ``wait=true`` answer with the final status and output"""
        workflow = get_workflow(current_user(), uuid, write=True)
        if not workflow.is_active:
            abort(409, message="The workflow is inactive.")
        execution = service.create_execution(workflow, current_user(), mode="webhook", input=webhook_payload())
        if not args["wait"]:
            return {"data": execution}
        timeout = args.get("timeout") or current_app.config["WEBHOOK_WAIT_TIMEOUT"]
        wait_for_finish(execution, timeout)
        db.session.refresh(execution)
        return {"data": execution}, 200 if execution.is_finished else 202
