"""Workflows (API Reference -> Workflow) and the node-type registry."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from athena.api import examples
from athena.api.base import envelope, list_envelope
from athena.api.pagination import PageArgsSchema, page_envelope, paginate
from athena.auth import SECURITY, current_user, login_required
from athena.engine import registry
from athena.schemas.workflows import (
    NodeTypeSchema,
    WorkflowCreateSchema,
    WorkflowQuerySchema,
    WorkflowSchema,
    WorkflowWriteSchema,
)
from athena.services import workflows as service
from athena.services.access import get_workflow

blp = Blueprint("workflows", __name__, url_prefix="/api/v1", description="Workflows")


class WorkflowListArgs(WorkflowQuerySchema, PageArgsSchema):
    pass


@blp.route("/workflows")
class Workflows(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(WorkflowListArgs, location="query")
    @blp.response(200, page_envelope(WorkflowSchema))
    def get(self, args):
        """List workflows in the caller's workspaces"""
        page = paginate(service.list_query(current_user(), args), args["page"], args["per_page"])
        service.annotate(current_user(), page["data"])
        return page

    @blp.doc(security=SECURITY)
    @blp.arguments(WorkflowCreateSchema, examples=examples.WORKFLOW_CREATE)
    @blp.response(201, envelope(WorkflowSchema))
    def post(self, body):
        """Create a workflow"""
        return {"data": service.create_workflow(current_user(), body)}


@blp.route("/workflows/<uuid:uuid>")
class WorkflowsById(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, envelope(WorkflowSchema))
    def get(self, uuid):
        """Retrieve a workflow"""
        return {"data": service.annotate(current_user(), [get_workflow(current_user(), uuid)])[0]}

    @blp.doc(security=SECURITY)
    @blp.arguments(WorkflowWriteSchema, examples=examples.WORKFLOW_UPDATE)
    @blp.response(200, envelope(WorkflowSchema))
    def put(self, body, uuid):
        """Update a workflow"""
        workflow = get_workflow(current_user(), uuid, write=True)
        return {"data": service.update_workflow(current_user(), workflow, body)}

    @blp.doc(security=SECURITY)
    @blp.response(204)
    def delete(self, uuid):
        """Delete a workflow (soft)"""
        service.delete_workflow(get_workflow(current_user(), uuid, write=True))


@blp.route("/workflows/<uuid:uuid>/favorite")
class WorkflowFavorite(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, envelope(WorkflowSchema))
    def post(self, uuid):
        """Mark a workflow as a favorite of the caller"""
        return {"data": service.set_favorite(current_user(), get_workflow(current_user(), uuid), True)}

    @blp.doc(security=SECURITY)
    @blp.response(200, envelope(WorkflowSchema))
    def delete(self, uuid):
        """Remove a workflow from the caller's favorites"""
        return {"data": service.set_favorite(current_user(), get_workflow(current_user(), uuid), False)}


@blp.route("/node-types")
class NodeTypes(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, list_envelope(NodeTypeSchema))
    def get(self):
        """List the node types a workflow may use, with their parameter schemas and handles"""
        return {"data": registry.describe()}
