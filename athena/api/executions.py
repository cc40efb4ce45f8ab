"""Workflow executions (API Reference -> Workflow Execution)."""
from __future__ import annotations

from flask import after_this_request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from athena.api import examples
from athena.api.base import envelope
from athena.api.pagination import PageArgsSchema, page_envelope, paginate
from athena.auth import SECURITY, current_user, login_required
from athena.schemas.executions import (
    ExecutionCountArgsSchema,
    ExecutionCountSchema,
    ExecutionCreateSchema,
    ExecutionListArgsSchema,
    ExecutionSchema,
    ExecutionUpdateSchema,
    IncludeArgsSchema,
)
from athena.services import execution_queries as queries
from athena.services import executions as service
from athena.models import WorkflowExecution
from athena.services.access import get_execution, get_workflow

blp = Blueprint("executions", __name__, url_prefix="/api/v1/workflow-executions",
                description="Workflow executions")


class ExecutionListArgs(ExecutionListArgsSchema, PageArgsSchema):
    pass


def _load(uuid: str, args: dict, *, write: bool = False) -> WorkflowExecution:
    execution = get_execution(current_user(), uuid, write=write)
    return queries.include(current_user(), [execution], args)[0]


@blp.route("")
class Executions(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(ExecutionListArgs, location="query")
    @blp.response(200, page_envelope(ExecutionSchema))
    def get(self, args):
        """List executions (a workspace, organization or workflow filter is required)"""
        page = paginate(queries.list_query(current_user(), args), args["page"], args["per_page"],
                        key=WorkflowExecution.id, rows=queries.with_options(select(WorkflowExecution), args))
        queries.include(current_user(), page["data"], args)
        return page

    @blp.doc(security=SECURITY)
    @blp.arguments(ExecutionCreateSchema, examples=examples.EXECUTION_CREATE)
    @blp.response(201, envelope(ExecutionSchema))
    def post(self, body):
        """Create (and start) an execution of a workflow"""
        workflow = get_workflow(current_user(), body["workflow_uuid"], write=True)
        if not workflow.is_active:
            abort(409, message="The workflow is inactive.")
        execution = service.create_execution(workflow, current_user(), mode=body["mode"], input=body.get("input"),
                                             expire_later=after_this_request)
        return {"data": execution}


@blp.route("/count")
class ExecutionCount(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(ExecutionCountArgsSchema, location="query")
    @blp.response(200, envelope(ExecutionCountSchema))
    def get(self, args):
        """Count executions in a date range (workspace_uuid or multiplai_id is required)"""
        return {"data": {"count": queries.count(current_user(), args)}}


@blp.route("/<uuid:uuid>")
class ExecutionsById(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(IncludeArgsSchema, location="query")
    @blp.response(200, envelope(ExecutionSchema))
    def get(self, args, uuid):
        """Retrieve an execution (with=workflow,workflowExecutionData adds the workflow and its run data)"""
        return {"data": _load(uuid, args)}

    @blp.doc(security=SECURITY)
    @blp.arguments(ExecutionUpdateSchema, examples=examples.EXECUTION_UPDATE)
    @blp.response(200, envelope(ExecutionSchema))
    def put(self, body, uuid):
        """Update an execution's client-editable fields"""
        return {"data": service.update_execution(get_execution(current_user(), uuid, write=True), body)}

    @blp.doc(security=SECURITY)
    @blp.arguments(ExecutionUpdateSchema, examples=examples.EXECUTION_UPDATE)
    @blp.response(200, envelope(ExecutionSchema))
    def patch(self, body, uuid):
        """Update an execution's client-editable fields"""
        return {"data": service.update_execution(get_execution(current_user(), uuid, write=True), body)}

    @blp.doc(security=SECURITY)
    @blp.response(204)
    def delete(self, uuid):
        """Delete an execution (soft; a running one is a 409)"""
        service.delete_execution(get_execution(current_user(), uuid, write=True))


@blp.route("/<uuid:uuid>/stop")
class ExecutionStop(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, envelope(ExecutionSchema))
    def post(self, uuid):
        """Stop a pending, running, waiting or paused execution (cascades to children and waiting parents)"""
        return {"data": service.stop_execution(get_execution(current_user(), uuid, write=True))}


@blp.route("/<uuid:uuid>/retry")
class ExecutionRetry(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(201, envelope(ExecutionSchema))
    def post(self, uuid):
        """Retry a failed execution from the failed node, reusing earlier outputs"""
        original = get_execution(current_user(), uuid, write=True)
        return {"data": service.retry_execution(original, current_user(), expire_later=after_this_request)}
