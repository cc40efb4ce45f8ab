"""Large Language Models (API Reference -> Large Language Model): the models the caller's
workspaces reach, per account (synced from the provider, merged with the known-models table)."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from athena.api.base import envelope
from athena.api.pagination import PageArgsSchema, page_envelope, paginate
from athena.auth import SECURITY, current_user, login_required
from athena.schemas.llm import LargeLanguageModelQuerySchema, LargeLanguageModelSchema
from athena.services import llm_accounts as service

blp = Blueprint("large_language_models", __name__, url_prefix="/api/v1", description="Large language models")


class LargeLanguageModelListArgs(LargeLanguageModelQuerySchema, PageArgsSchema):
    pass


@blp.route("/large-language-models")
class LargeLanguageModels(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(LargeLanguageModelListArgs, location="query")
    @blp.response(200, page_envelope(LargeLanguageModelSchema))
    def get(self, args):
        """List the large language models of the caller's workspaces"""
        return paginate(service.model_list_query(current_user(), args), args["page"], args["per_page"])


@blp.route("/large-language-models/<uuid:uuid>")
class LargeLanguageModelsById(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, envelope(LargeLanguageModelSchema))
    def get(self, uuid):
        """Retrieve a large language model"""
        return {"data": service.get_model(current_user(), uuid)}
