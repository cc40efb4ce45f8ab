"""Approvals (human review) of a workflow execution: list, approve, reject."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from athena.api import examples
from athena.api.base import envelope, list_envelope
from athena.auth import SECURITY, current_user, login_required
from athena.schemas.approvals import ApprovalDecisionSchema, ApprovalSchema
from athena.services import approvals as service

blp = Blueprint("approvals", __name__, url_prefix="/api/v1/workflow-executions",
                description="Approvals (human review) of workflow executions")


@blp.route("/<uuid:uuid>/approvals")
class Approvals(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.response(200, list_envelope(ApprovalSchema))
    def get(self, uuid):
        """List the approvals of an execution (pending and decided), oldest first"""
        return {"data": service.list_approvals(current_user(), uuid)}


def _decide(decision: str, body: dict, uuid: str, approval_id: str):
    approval = service.decide(current_user(), uuid, approval_id, decision, body.get("comment"))
    return {"data": approval}


@blp.route("/<uuid:uuid>/approvals/<approval_id>/approve")
class ApprovalApprove(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(ApprovalDecisionSchema, required=False, examples=examples.APPROVE)
    @blp.response(200, envelope(ApprovalSchema))
    def post(self, body, uuid, approval_id):
        """Approve a pending approval (editor/owner)

        The execution resumes on 'approved'. The first decision wins: a decided approval is a 409."""
        return _decide("approved", body, uuid, approval_id)


@blp.route("/<uuid:uuid>/approvals/<approval_id>/reject")
class ApprovalReject(MethodView):
    decorators = [login_required]

    @blp.doc(security=SECURITY)
    @blp.arguments(ApprovalDecisionSchema, required=False, examples=examples.REJECT)
    @blp.response(200, envelope(ApprovalSchema))
    def post(self, body, uuid, approval_id):
        """Reject a pending approval (editor/owner)

        The execution resumes on 'rejected'. The first decision wins: a decided approval is a 409."""
        return _decide("rejected", body, uuid, approval_id)
