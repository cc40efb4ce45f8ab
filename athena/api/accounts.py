"""Accounts (API Reference -> Account): a workspace's credentials for one provider, checked
against the provider on every write unless ?verify=false; secrets masked in every answer."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from athena.api import examples
from athena.api.base import ErrorSchema, envelope
from athena.api.llm_access import write_access_first
from athena.api.pagination import PageArgsSchema, page_envelope, paginate
from athena.auth import SECURITY, current_user, login_required
from athena.schemas.llm import (
    AccountCreateSchema, AccountQuerySchema, AccountSchema, AccountWriteSchema, VerifyArgsSchema,
)
from athena.services import llm_accounts as service

blp = Blueprint("accounts", __name__, url_prefix="/api/v1", description="LLM accounts")
REFUSED = "Invalid body, or the provider refused the credentials (its reason in the message)."


class AccountListArgs(AccountQuerySchema, PageArgsSchema):
    pass


@blp.route("/accounts")
class Accounts(MethodView):
    decorators = [write_access_first(), login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(AccountListArgs, location="query")
    @blp.response(200, page_envelope(AccountSchema))
    def get(self, args):
        """List the accounts of the caller's workspaces"""
        return paginate(service.account_list_query(current_user(), args), args["page"], args["per_page"])

    @blp.doc(security=SECURITY)
    @blp.arguments(VerifyArgsSchema, location="query")
    @blp.arguments(AccountCreateSchema, examples=examples.ACCOUNT_CREATE)
    @blp.response(201, envelope(AccountSchema))
    @blp.alt_response(422, schema=ErrorSchema, description=REFUSED)
    def post(self, args, body):
        """Create an account (checked against the provider unless verify=false; its models sync in the background)"""
        return {"data": service.create_account(current_user(), body, check=args["verify"])}


@blp.route("/accounts/<uuid:uuid>")
class AccountsById(MethodView):
    decorators = [write_access_first(service.get_account), login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, envelope(AccountSchema))
    def get(self, uuid):
        """Retrieve an account"""
        return {"data": service.get_account(current_user(), uuid)}

    @blp.doc(security=SECURITY)
    @blp.arguments(VerifyArgsSchema, location="query")
    @blp.arguments(AccountWriteSchema, examples=examples.ACCOUNT_UPDATE)
    @blp.response(200, envelope(AccountSchema))
    @blp.alt_response(422, schema=ErrorSchema, description=REFUSED)
    def put(self, args, body, uuid):
        """Update an account (checked against the provider unless verify=false)"""
        account = service.get_account(current_user(), uuid, write=True)
        return {"data": service.update_account(current_user(), account, body, check=args["verify"])}

    @blp.doc(security=SECURITY)
    @blp.response(204)
    def delete(self, uuid):
        """Delete an account (soft; its models go with it)"""
        service.delete_account(service.get_account(current_user(), uuid, write=True))


@blp.route("/accounts/<uuid:uuid>/sync-models")
class AccountSyncModels(MethodView):
    decorators = [write_access_first(service.get_account), login_required]

    @blp.doc(security=SECURITY)
    @blp.response(202, envelope(AccountSchema))
    def post(self, uuid):
        """Sync the account's models from its provider now (an RQ job; poll the models or the account's sync_status)"""
        return {"data": service.enqueue_sync(service.get_account(current_user(), uuid, write=True))}
