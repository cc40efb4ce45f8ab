"""Generate Workflow (API Reference -> Workflow -> Generate Workflow).

``POST /api/v1/workflows/generate`` takes JSON or multipart/form-data. Without ``stream`` it
answers ``{"data": "<workflow JSON string>"}`` (200) or, with ``auto_create``, the created
Workflow (201). With ``stream`` it answers ``text/event-stream``: ``start``, ``token``,
``validation``, ``repair``, ``workflow``, ``created``, ``error`` and ``done`` events, with
``: heartbeat`` comments while the model is silent."""
from __future__ import annotations

import json
from typing import Any, Iterator

from flask import Response, current_app, jsonify, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError

from athena.api import examples
from athena.api.base import ErrorSchema, envelope
from athena.auth import SECURITY, current_user, login_required
from athena.errors import DomainError
from athena.schemas.generate import GeneratedWorkflowSchema, GenerateInvalidSchema, GenerateRequestSchema
from athena.schemas.workflows import WorkflowSchema
from athena.services.access import get_workspace
from athena.services.generate import GenerateError, Generation

blp = Blueprint("generate", __name__, url_prefix="/api/v1", description="Workflow generation")

REQUEST_BODY = {"required": True, "content": {
    "application/json": {"schema": GenerateRequestSchema, "examples": examples.GENERATE_JSON},
    "multipart/form-data": {"schema": GenerateRequestSchema, "examples": examples.GENERATE_FORM},
}}
EVENTS = ("start", "token", "validation", "repair", "workflow", "created", "error", "done")
# One Server-Sent Event (stream=true); ``data`` is JSON. ``: heartbeat`` comments are not events.
EVENT_STREAM = {"type": "object", "required": ["event", "data"], "properties": {
    "event": {"type": "string", "enum": list(EVENTS)},
    "data": {"type": "string", "contentMediaType": "application/json"}}}
SSE_DOC = {"200": {
    "description": "The generated workflow JSON as a string (stream=false), or an event stream (stream=true).",
    "content": {"application/json": {"schema": GeneratedWorkflowSchema},
                "text/event-stream": {"schema": EVENT_STREAM}},
}}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _load_body() -> dict[str, Any]:
    if request.is_json:
        raw = request.get_json(silent=True)  # invalid JSON was already a 400 (guard_input)
    else:
        raw = {key: value for key, value in request.form.items() if value != ""}
    try:
        return GenerateRequestSchema().load({} if raw is None else raw)
    except ValidationError as exc:
        abort(422, errors=exc.messages)


def _error_response(exc: GenerateError) -> Response:
    payload = exc.payload()
    payload.pop("status")
    response = jsonify(payload)
    response.status_code = exc.status
    response.headers.update(exc.headers)
    return response


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


def _created(workflow: Any) -> dict[str, Any]:
    return envelope(WorkflowSchema)().dump({"data": workflow})


def _sse(generation: Generation) -> Iterator[str]:
    ok = False
    try:
        for name, data in generation.events():
            if name == "heartbeat":
                yield ": heartbeat\n\n"
                continue
            yield _event(name, _created(data) if name == "created" else data)
        ok = True
    except GenerateError as exc:
        yield _event("error", exc.payload())
    except DomainError as exc:  # e.g. create_workflow's own validation
        yield _event("error", {"status": exc.status, "message": exc.message, "errors": exc.errors})
    except Exception:  # noqa: BLE001 - the stream has started: report, do not crash
        current_app.logger.exception("workflow generation failed")
        yield _event("error", {"status": 500, "message": "Internal server error"})
    yield _event("done", {"ok": ok})


@blp.route("/workflows/generate")
class GenerateWorkflow(MethodView):
    decorators = [login_required]
    other_body_types = ("multipart/form-data", "application/x-www-form-urlencoded")  # the documented form

    @blp.doc(security=SECURITY, requestBody=REQUEST_BODY, responses=SSE_DOC)
    @blp.response(200, GeneratedWorkflowSchema)
    @blp.alt_response(201, schema=envelope(WorkflowSchema), description="auto_create: the created Workflow.")
    @blp.alt_response(422, schema=GenerateInvalidSchema, description="Invalid request, or no valid workflow "
                                                                      "after the repair rounds.")
    @blp.alt_response(429, schema=ErrorSchema, description="The model provider is rate limiting (Retry-After).")
    @blp.alt_response(502, schema=ErrorSchema, description="The model provider failed.")
    @blp.alt_response(503, schema=ErrorSchema, description="No model configured, or it is unreachable.")
    @blp.alt_response(504, schema=ErrorSchema, description="The model did not answer in time.")
    def post(self):
        """Generate a workflow from a natural-language prompt"""
        body = _load_body()
        user = current_user()
        workspace = get_workspace(user, body["workspace_uuid"], write=True)
        try:
            generation = Generation(user, workspace, body)
            if body["stream"]:
                generation.open()
                return Response(stream_with_context(_sse(generation)), mimetype="text/event-stream",
                                headers=SSE_HEADERS)
            results = {name: data for name, data in generation.events() if name in ("workflow", "created")}
        except GenerateError as exc:
            return _error_response(exc)
        if "created" in results:
            response = jsonify(_created(results["created"]))
            response.status_code = 201
            return response
        return {"data": json.dumps(results["workflow"]["workflow"])}
