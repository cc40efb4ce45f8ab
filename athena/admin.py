"""The RQ dashboard at ``/rq``, for administrators who belong to no workspace.

Browsers cannot set an Authorization header on a page load, so ``/rq?token=...`` is accepted
once and turned into an HttpOnly, SameSite=Strict cookie scoped to ``/rq``."""
from __future__ import annotations

from flask import Flask, jsonify, redirect, request
from sqlalchemy import exists, select

from athena.auth import token_from_request, user_for_token
from athena.extensions import db
from athena.models import User, WorkspaceMember

COOKIE = "athena_rq_token"
PREFIX = "/rq"


def is_dashboard_admin(user: User) -> bool:
    if not user.is_admin:
        return False
    member = db.session.execute(select(exists().where(WorkspaceMember.user_id == user.id))).scalar()
    return not member


def _guard():
    if request.blueprint != "rq_dashboard":
        return None
    query_token = request.args.get("token")
    token = token_from_request() or query_token or request.cookies.get(COOKIE)
    found = user_for_token(token)
    if found is None:
        return jsonify(message="Unauthenticated."), 401
    if not is_dashboard_admin(found[0]):
        return jsonify(message="This action is unauthorized."), 403
    if query_token:
        response = redirect(request.path)
        response.set_cookie(COOKIE, query_token, httponly=True, samesite="Strict", path=PREFIX,
                            secure=request.is_secure)
        return response
    return None


def init_app(app: Flask) -> None:
    if not app.config.get("REDIS_URL"):
        return
    import rq_dashboard
    from rq_dashboard.web import setup_rq_connection

    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", app.config["REDIS_URL"])
    setup_rq_connection(app)
    app.before_request(_guard)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
