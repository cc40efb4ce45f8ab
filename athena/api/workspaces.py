"""Workspaces (API Reference -> Workspace) and their members."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from athena.api import examples
from athena.api.base import envelope, list_envelope
from athena.api.pagination import PageArgsSchema, page_envelope, paginate
from athena.auth import SECURITY, current_user, login_required
from athena.schemas.workspaces import (
    MemberCreateSchema,
    MemberSchema,
    MemberUpdateSchema,
    WorkspaceCreateSchema,
    WorkspaceQuerySchema,
    WorkspaceSchema,
    WorkspaceUpdateSchema,
)
from athena.services import workspaces as service
from athena.services.access import get_workspace

blp = Blueprint("workspaces", __name__, url_prefix="/api/v1/workspaces", description="Workspaces and members")


class WorkspaceListArgs(WorkspaceQuerySchema, PageArgsSchema):
    pass


@blp.route("")
class Workspaces(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(WorkspaceListArgs, location="query")
    @blp.response(200, page_envelope(WorkspaceSchema))
    def get(self, args):
        """List the caller's workspaces"""
        page = paginate(service.list_query(current_user(), args.get("search")), args["page"], args["per_page"])
        service.annotate_roles(current_user(), page["data"])
        return page

    @blp.doc(security=SECURITY)
    @blp.arguments(WorkspaceCreateSchema, examples=examples.WORKSPACE_CREATE)
    @blp.response(201, envelope(WorkspaceSchema))
    def post(self, body):
        """Create a workspace; the caller becomes its owner"""
        return {"data": service.create_workspace(current_user(), body["name"], body.get("description"))}


@blp.route("/<uuid:uuid>")
class WorkspacesById(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, envelope(WorkspaceSchema))
    def get(self, uuid):
        """Retrieve a workspace"""
        workspace = get_workspace(current_user(), uuid)
        service.annotate_roles(current_user(), [workspace])
        return {"data": workspace}

    @blp.doc(security=SECURITY)
    @blp.arguments(WorkspaceUpdateSchema, examples=examples.WORKSPACE_UPDATE)
    @blp.response(200, envelope(WorkspaceSchema))
    def put(self, body, uuid):
        """Update a workspace"""
        workspace = service.update_workspace(get_workspace(current_user(), uuid, write=True), body)
        service.annotate_roles(current_user(), [workspace])
        return {"data": workspace}

    @blp.doc(security=SECURITY)
    @blp.response(204)
    def delete(self, uuid):
        """Delete a workspace (soft; owners only)"""
        service.delete_workspace(current_user(), get_workspace(current_user(), uuid))


@blp.route("/<uuid:uuid>/members")
class Members(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, list_envelope(MemberSchema))
    def get(self, uuid):
        """List the members of a workspace"""
        return {"data": service.members(get_workspace(current_user(), uuid))}

    @blp.doc(security=SECURITY)
    @blp.arguments(MemberCreateSchema, examples=examples.MEMBER_CREATE)
    @blp.response(201, envelope(MemberSchema))
    def post(self, body, uuid):
        """Add a user to the workspace with a role (owners only)"""
        workspace = get_workspace(current_user(), uuid)
        return {"data": service.add_member(current_user(), workspace, body["email"], body["role"])}


@blp.route("/<uuid:uuid>/members/<uuid:user_uuid>")
class MembersById(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(MemberUpdateSchema, examples=examples.MEMBER_UPDATE)
    @blp.response(200, envelope(MemberSchema))
    def put(self, body, uuid, user_uuid):
        """Change a member's role (owners only)"""
        workspace = get_workspace(current_user(), uuid)
        return {"data": service.change_role(current_user(), workspace, user_uuid, body["role"])}

    @blp.doc(security=SECURITY)
    @blp.response(204)
    def delete(self, uuid, user_uuid):
        """Remove a member (owners only)"""
        service.remove_member(current_user(), get_workspace(current_user(), uuid), user_uuid)
