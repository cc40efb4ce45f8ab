from tests.factories import make_user, make_workspace, token_for


def test_rq_dashboard_only_for_workspace_less_admins(client):
    admin = make_user(is_admin=True)
    admin_in_workspace = make_user(is_admin=True)
    make_workspace(admin_in_workspace)
    plain = make_user()

    assert client.get("/rq/").status_code == 401
    assert client.get("/rq/", headers={"Authorization": f"Bearer {token_for(plain)}"}).status_code == 403
    in_ws = client.get("/rq/", headers={"Authorization": f"Bearer {token_for(admin_in_workspace)}"})
    assert in_ws.status_code == 403 and in_ws.is_json

    ok = client.get("/rq/", headers={"Authorization": f"Bearer {token_for(admin)}"})
    assert ok.status_code == 200
    assert b"RQ" in ok.data


def test_rq_dashboard_query_token_becomes_cookie(client):
    admin = make_user(is_admin=True)
    first = client.get(f"/rq/?token={token_for(admin)}")
    assert first.status_code == 302
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/rq" in cookie
    follow = client.get("/rq/")
    assert follow.status_code == 200
