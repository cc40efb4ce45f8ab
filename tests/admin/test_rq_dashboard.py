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


HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # a browser's


def test_a_browser_without_credentials_gets_a_sign_in_form(client):
    page = client.get("/rq/", headers=HTML)
    assert page.status_code == 401 and page.mimetype == "text/html"
    assert b'<form method="post" action="/rq/sign-in">' in page.data and b'name="token"' in page.data
    assert page.headers["Cache-Control"] == "no-store"
    assert client.get("/rq/").is_json  # API clients (Accept: */*) still get the JSON 401


def test_the_sign_in_form_sets_the_cookie_and_keeps_the_token_out_of_urls(client):
    admin = make_user(is_admin=True)
    token = token_for(admin)
    signed = client.post("/rq/sign-in", data={"token": token}, headers=HTML)
    assert signed.status_code == 303 and signed.headers["Location"] == "/rq/"
    assert token not in signed.headers["Location"]
    cookie = signed.headers["Set-Cookie"]
    assert cookie.startswith(f"athena_rq_token={token}")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/rq" in cookie
    follow = client.get("/rq/", headers=HTML)
    assert follow.status_code == 200 and b"RQ" in follow.data


def test_the_sign_in_form_refuses_bad_tokens_and_other_sites(client):
    admin_in_workspace = make_user(is_admin=True)
    make_workspace(admin_in_workspace)
    admin = make_user(is_admin=True)

    wrong = client.post("/rq/sign-in", data={"token": "aths_wrong"}, headers=HTML)
    assert wrong.status_code == 401 and b"Unknown or expired token" in wrong.data and "Set-Cookie" not in wrong.headers
    empty = client.post("/rq/sign-in", data={}, headers=HTML)
    assert empty.status_code == 401 and "Set-Cookie" not in empty.headers
    member = client.post("/rq/sign-in", data={"token": token_for(admin_in_workspace)}, headers=HTML)
    assert member.status_code == 403 and "Set-Cookie" not in member.headers
    elsewhere = client.post("/rq/sign-in", data={"token": token_for(admin)},
                            headers={**HTML, "Origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and "Set-Cookie" not in elsewhere.headers
    same_site = client.post("/rq/sign-in", data={"token": token_for(admin)},
                            headers={**HTML, "Origin": "http://localhost"})
    assert same_site.status_code == 303
