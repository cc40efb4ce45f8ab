"""Authentication and the authenticated user (API Reference -> Authentication, User)."""
from __future__ import annotations

from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from athena.api import examples
from athena.api.base import ErrorSchema, envelope
from athena.auth import (
    INVALID_CREDENTIALS,
    SECURITY,
    SECURITY_WITH_BASIC,
    issue_token,
    login_or_basic_required,
    login_required,
    user_by_email,
    verify_password,
)
from athena.extensions import db
from athena.schemas.users import MessageSchema, SignInSchema, TokenSchema, UserSchema
from athena.services.credential_limits import begin_attempt
from athena.timeutil import utcnow

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Authentication and the current user")

RATE_LIMITED = dict(
    schema=ErrorSchema,
    description="Too many failed password checks for this account (ATHENA_AUTH_FAILURE_LIMIT_ACCOUNT) or from "
                "this client address (ATHENA_AUTH_FAILURE_LIMIT_ADDRESS) in the window "
                "(ATHENA_AUTH_FAILURE_WINDOW); nothing is verified, the right password included, until "
                "Retry-After seconds have passed.",
    headers={"Retry-After": {"description": "Seconds until the rate window resets", "schema": {"type": "integer"}}},
)


@blp.route("/auth/sign-in")
class SignIn(MethodView):
    @blp.arguments(SignInSchema, examples=examples.SIGN_IN)
    @blp.response(200, envelope(TokenSchema))
    @blp.alt_response(429, **RATE_LIMITED)
    def post(self, body):
        """Sign in with email and password; returns a session token"""
        attempt = begin_attempt(body["email"], request.remote_addr)  # 429 here, before any argon2 work
        user = user_by_email(body["email"])
        if not verify_password(user, body["password"]):
            abort(401, message=INVALID_CREDENTIALS)
        attempt.succeeded()  # only failures count
        clear, token = issue_token(user, "session", name=body.get("device_name", "sign-in"))
        db.session.commit()
        return {"data": {"token": clear, "token_type": "Bearer", "expires_at": token.expires_at, "user": user}}


@blp.route("/auth/logout")
class Logout(MethodView):
    @blp.doc(security=SECURITY)
    @blp.response(200, MessageSchema)
    @login_required
    def post(self):
        """Revoke the token used for this request"""
        g.token.revoked_at = utcnow()
        db.session.commit()
        return {"message": "Logged out."}


@blp.route("/user")
class CurrentUser(MethodView):
    @blp.doc(security=SECURITY_WITH_BASIC)
    @blp.response(200, envelope(UserSchema))
    @blp.alt_response(429, **RATE_LIMITED)
    @login_or_basic_required
    def get(self):
        """The authenticated user

        Authenticated by a token in either header, or by HTTP Basic (email:password or email:app-token)."""
        return {"data": g.user}
