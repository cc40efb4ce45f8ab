"""The RQ dashboard at ``/rq``, for administrators who belong to no workspace.

Browsers cannot set an Authorization header on a page load. A browser that opens ``/rq``
without credentials gets a sign-in form; it posts the token to ``/rq/sign-in``, which sets an
HttpOnly, SameSite=Strict cookie scoped to ``/rq``: the token never appears in a URL (URLs end
up in access logs and the browser's history). ``/rq?token=...`` is still accepted once and
turned into the same cookie, for scripts. API clients send the token as usual (Authorization)."""
from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, redirect, request
from sqlalchemy import exists, select

from athena.auth import token_from_request, user_for_token
from athena.extensions import db
from athena.models import User, WorkspaceMember

COOKIE = "athena_rq_token"
PREFIX = "/rq"
SIGN_IN = f"{PREFIX}/sign-in"
SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Athena: RQ dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 4em auto">
<h1>RQ dashboard</h1>
<p>For administrators who belong to no workspace. Paste an API token of such a user
(<code>python -m athena.cli users create admin@example.com --admin</code>, then
<code>python -m athena.cli tokens create admin@example.com</code>).</p>
<p style="color: #b00020">{error}</p>
<form method="post" action="{action}">
<label>Token <input type="password" name="token" autocomplete="off" required autofocus size="40"></label>
<button type="submit">Sign in</button>
</form></body></html>
"""


def is_dashboard_admin(user: User) -> bool:
    if not user.is_admin:
        return False
    member = db.session.execute(select(exists().where(WorkspaceMember.user_id == user.id))).scalar()
    return not member


def _wants_html() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _sign_in_page(error: str, status: int) -> Response:
    return Response(SIGN_IN_PAGE.format(error=escape(error), action=SIGN_IN), status=status,
                    mimetype="text/html", headers={"Cache-Control": "no-store"})


def _with_cookie(response: Response, token: str) -> Response:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path=PREFIX, secure=request.is_secure)
    return response


def _guard():
    if request.blueprint != "rq_dashboard":
        return None
    query_token = request.args.get("token")
    token = token_from_request() or query_token or request.cookies.get(COOKIE)
    found = user_for_token(token)
    if found is None:
        if _wants_html():  # a browser: the sign-in form (the token goes in a POST body, not a URL)
            return _sign_in_page("", 401)
        return jsonify(message="Unauthenticated."), 401
    if not is_dashboard_admin(found[0]):
        return jsonify(message="This action is unauthorized."), 403
    if query_token:
        return _with_cookie(redirect(request.path), query_token)
    return None


def sign_in():
    """``POST /rq/sign-in`` (form field ``token``): sets the dashboard cookie, then back to ``/rq/``."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:  # another site's form ("null" included)
        return _sign_in_page("Sign in from this server's own page.", 403)
    token = (request.form.get("token") or "").strip()
    found = user_for_token(token) if token else None
    if found is None:
        return _sign_in_page("Unknown or expired token.", 401)
    if not is_dashboard_admin(found[0]):
        return _sign_in_page("This token's user is not an administrator outside every workspace.", 403)
    return _with_cookie(redirect(f"{PREFIX}/", code=303), token)


def init_app(app: Flask) -> None:
    if not app.config.get("REDIS_URL"):
        return
    import rq_dashboard
    from rq_dashboard.web import setup_rq_connection

    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", app.config["REDIS_URL"])
    setup_rq_connection(app)
    app.before_request(_guard)
    app.add_url_rule(SIGN_IN, "rq_sign_in", sign_in, methods=["POST"])
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
