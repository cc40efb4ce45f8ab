"""Providers (API Reference -> Provider): the built-ins (read-only) and a workspace's own."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from athena.api import examples
from athena.api.base import envelope
from athena.api.llm_access import write_access_first
from athena.api.pagination import PageArgsSchema, page_envelope, paginate
from athena.auth import SECURITY, current_user, login_required
from athena.schemas.llm import ProviderCreateSchema, ProviderQuerySchema, ProviderSchema, ProviderWriteSchema
from athena.services import llm_accounts as service

blp = Blueprint("providers", __name__, url_prefix="/api/v1", description="LLM providers")


class ProviderListArgs(ProviderQuerySchema, PageArgsSchema):
    pass


@blp.route("/providers")
class Providers(MethodView):
    decorators = [write_access_first(), login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(ProviderListArgs, location="query")
    @blp.response(200, page_envelope(ProviderSchema))
    def get(self, args):
        """List providers: the built-ins and those of the caller's workspaces"""
        return paginate(service.provider_list_query(current_user(), args), args["page"], args["per_page"])

    @blp.doc(security=SECURITY)
    @blp.arguments(ProviderCreateSchema, examples=examples.PROVIDER_CREATE)
    @blp.response(201, envelope(ProviderSchema))
    def post(self, body):
        """Create a provider in a workspace (owner or editor)"""
        return {"data": service.create_provider(current_user(), body)}


@blp.route("/providers/<uuid:uuid>")
class ProvidersById(MethodView):
    decorators = [write_access_first(service.get_provider), login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, envelope(ProviderSchema))
    def get(self, uuid):
        """Retrieve a provider"""
        return {"data": service.get_provider(current_user(), uuid)}

    @blp.doc(security=SECURITY)
    @blp.arguments(ProviderWriteSchema, examples=examples.PROVIDER_UPDATE)
    @blp.response(200, envelope(ProviderSchema))
    def put(self, body, uuid):
        """Update a provider (built-ins are read-only: 403)"""
        provider = service.get_provider(current_user(), uuid, write=True)
        return {"data": service.update_provider(current_user(), provider, body)}

    @blp.doc(security=SECURITY)
    @blp.response(204)
    def delete(self, uuid):
        """Delete a provider (soft; 409 while it has accounts)"""
        service.delete_provider(service.get_provider(current_user(), uuid, write=True))
