from tests.factories import PASSWORD, make_user, token_for


def test_sign_in_returns_token_and_user(client):
    user = make_user("Alice@Example.com")
    response = client.post("/api/v1/auth/sign-in", json={"email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["token_type"] == "Bearer"
    assert len(data["token"]) >= 43
    assert data["expires_at"].endswith("Z")
    assert data["user"]["uuid"] == user.uuid
    me = client.get("/api/v1/user", headers={"Authorization": f"Bearer {data['token']}"})
    assert me.status_code == 200
    assert me.json["data"]["email"] == "alice@example.com"
    assert me.json["data"]["multiplai_id"] == user.multiplai_id


def test_wrong_credentials_do_not_say_which_part(client):
    make_user("bob@example.com")
    wrong_password = client.post("/api/v1/auth/sign-in", json={"email": "bob@example.com", "password": "nope"})
    wrong_email = client.post("/api/v1/auth/sign-in", json={"email": "nobody@example.com", "password": PASSWORD})
    assert wrong_password.status_code == wrong_email.status_code == 401
    assert wrong_password.json["message"] == wrong_email.json["message"]


def test_sign_in_validation(client):
    response = client.post("/api/v1/auth/sign-in", json={"email": "x@example.com"})
    assert response.status_code == 422
    assert "password" in response.json["errors"]
    not_json = client.post("/api/v1/auth/sign-in", data="{{{", content_type="application/json")
    assert not_json.status_code in (400, 422)
    assert "message" in not_json.json


def test_logout_revokes_token(client):
    user = make_user()
    token = token_for(user)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/user", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 200
    revoked = client.get("/api/v1/user", headers=headers)
    assert revoked.status_code == 401
    assert revoked.json["message"] == "Unauthenticated."


def test_missing_and_garbage_tokens_are_401(client):
    assert client.get("/api/v1/user").status_code == 401
    assert client.get("/api/v1/user", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/user", headers={"Authorization": "Bearer " + "x" * 5000}).status_code == 401


def test_expired_token_is_401(client):
    from datetime import timedelta

    from athena.auth import issue_token
    from athena.extensions import db

    user = make_user()
    clear, token = issue_token(user, "session", ttl_seconds=60)
    token.expires_at = token.created_at - timedelta(seconds=1)
    db.session.commit()
    assert client.get("/api/v1/user", headers={"Authorization": f"Bearer {clear}"}).status_code == 401


def test_app_token_in_multiplai_header(client):
    user = make_user()
    clear = token_for(user, kind="app")
    response = client.get("/api/v1/user", headers={"X-Multiplai-Authorization": clear})
    assert response.status_code == 200
    assert response.json["data"]["uuid"] == user.uuid


def test_tokens_and_passwords_stored_hashed(client):
    from athena.extensions import db
    from athena.models import ApiToken

    user = make_user()
    clear = token_for(user)
    stored = db.session.execute(db.select(ApiToken)).scalars().all()
    assert stored and all(clear not in (t.token_hash or "") for t in stored)
    assert user.password_hash.startswith("$argon2")


def test_cli_creates_user_workspace_and_app_token(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "cli@example.com", "--password", "longpassword", "--workspace", "Ops"])
    assert result.exit_code == 0, result.output
    assert "workspace 'Ops' created" in result.output
    result = runner.invoke(args=["tokens", "create", "cli@example.com"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    response = client.get("/api/v1/workspaces", headers={"X-Multiplai-Authorization": token})
    assert response.status_code == 200
    assert [w["name"] for w in response.json["data"]] == ["Ops"]
    signed = client.post("/api/v1/auth/sign-in", json={"email": "cli@example.com", "password": "longpassword"})
    assert signed.status_code == 200
