"""Token lifecycle: logout, logout everywhere, refresh with rotation, key rotation."""

from datetime import timedelta

import jwt
import pytest

import session_tokens
from helpers import (
    SECRET_KEY,
    bearer,
    empty_tables,
    make_app,
    make_token,
)
from models import RevokedToken, User, db, utcnow

OLD_KEY = "an-older-signing-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFG"


@pytest.fixture
def tokens(auth):
    """alice's sign-in answer: access token, refresh token and lifetimes."""
    auth.create_user()
    return auth.login().get_json()


def test_login_also_returns_a_refresh_token(tokens):
    assert tokens["refresh_expires_in"] == 7 * 24 * 3600
    claims = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    access = jwt.decode(tokens["token"], options={"verify_signature": False})
    assert claims["typ"] == "refresh" and access["typ"] == "access"
    assert claims["exp"] - claims["iat"] == 7 * 24 * 3600
    assert claims["fam"] == access["fam"]


def test_logout_revokes_the_presented_token(client, tokens):
    response = client.post("/logout", headers=bearer(tokens["token"]))
    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    after = client.get("/files", headers=bearer(tokens["token"]))
    assert after.status_code == 401
    assert after.get_json() == {"message": "Token revoked"}


def test_logout_with_the_token_in_the_query_works_too(client, tokens):
    assert client.post(f"/logout?token={tokens['token']}").status_code == 204
    assert client.get(f"/files?token={tokens['token']}").status_code == 401


def test_logout_also_ends_the_sign_ins_refresh_token(client, tokens):
    client.post("/logout", headers=bearer(tokens["token"]))
    response = client.post("/refresh", headers=bearer(tokens["refresh_token"]))
    assert response.status_code == 401


def test_logout_leaves_other_sign_ins_alone(auth, client, tokens):
    other = auth.token()
    client.post("/logout", headers=bearer(tokens["token"]))
    assert client.get("/files", headers=bearer(other)).status_code == 200


def test_logout_everywhere_revokes_every_token_of_the_user(auth, client, tokens):
    other = auth.token()
    response = client.post("/logout?everywhere=1", headers=bearer(tokens["token"]))
    assert response.status_code == 204
    for token in (tokens["token"], other):
        answer = client.get("/files", headers=bearer(token))
        assert answer.get_json() == {"message": "Token revoked"}
    assert (
        client.post("/refresh", headers=bearer(tokens["refresh_token"])).status_code
        == 401
    )
    # Signing in again works.
    assert client.get("/files", headers=bearer(auth.token())).status_code == 200


@pytest.mark.parametrize("value", ["0", "false", "no"])
def test_logout_everywhere_off_signs_out_this_token_only(auth, client, tokens, value):
    other = auth.token()
    response = client.post(
        f"/logout?everywhere={value}", headers=bearer(tokens["token"])
    )
    assert response.status_code == 204
    assert client.get("/files", headers=bearer(tokens["token"])).status_code == 401
    assert client.get("/files", headers=bearer(other)).status_code == 200


def test_logout_everywhere_must_be_a_yes_or_no(client, tokens):
    response = client.post("/logout?everywhere=maybe", headers=bearer(tokens["token"]))
    assert response.status_code == 400
    assert response.get_json() == {
        "message": "everywhere: everywhere must be 1 or 0 (true or false)"
    }
    # Nothing was revoked by the refused request.
    assert client.get("/files", headers=bearer(tokens["token"])).status_code == 200


def test_logout_everywhere_spares_other_users(auth, client, tokens):
    auth.create_user("bob")
    bobs = auth.token("bob")
    client.post("/logout?everywhere=1", headers=bearer(tokens["token"]))
    assert client.get("/files", headers=bearer(bobs)).status_code == 200


def test_new_password_signs_the_user_out_everywhere(client, runner, tokens):
    result = runner.invoke(
        args=["users", "set-password", "alice"], input="a brand new password\n"
    )
    assert result.exit_code == 0, result.output
    answer = client.get("/files", headers=bearer(tokens["token"]))
    assert answer.get_json() == {"message": "Token revoked"}


@pytest.mark.one_database
def test_logout_needs_a_token(client):
    response = client.post("/logout")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token missing"}


def test_browser_sign_out_goes_to_the_sign_in_page(client, tokens):
    html = {"Accept": "text/html"}
    response = client.post(f"/logout?token={tokens['token']}", headers=html)
    assert response.status_code == 303
    page = client.get(response.headers["Location"], headers=html)
    assert "You are signed out" in page.get_data(as_text=True)


def test_refresh_returns_a_new_pair_and_retires_the_old_one(client, tokens):
    response = client.post("/refresh", headers=bearer(tokens["refresh_token"]))
    assert response.status_code == 200
    fresh = response.get_json()
    assert fresh["token"] != tokens["token"]
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/files", headers=bearer(fresh["token"])).status_code == 200
    again = client.post("/refresh", headers=bearer(fresh["refresh_token"]))
    assert again.status_code == 200


@pytest.mark.parametrize("how", ["json", "form"])
def test_refresh_token_may_come_in_the_body(client, tokens, how):
    body = {"refresh_token": tokens["refresh_token"]}
    kwargs = {"json": body} if how == "json" else {"data": body}
    assert client.post("/refresh", **kwargs).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "The body must be a JSON object"),
        ("a string", "The body must be a JSON object"),
        ({"refresh_token": 12}, "refresh_token: refresh_token must be a string"),
        ({"refresh_token": ""}, "refresh_token: refresh_token is empty"),
    ],
)
def test_a_malformed_refresh_body_is_a_400(client, tokens, body, message):
    # Even with a good token in the header: a body that makes no sense is refused.
    response = client.post(
        "/refresh", json=body, headers=bearer(tokens["refresh_token"])
    )
    assert response.status_code == 400
    assert response.get_json() == {"message": message}


def test_broken_json_is_a_400_on_refresh_and_login(client, tokens):
    for path in ("/refresh", "/login"):
        response = client.post(path, data="{not json", content_type="application/json")
        assert response.status_code == 400
        # The message says so, and where the parser stopped.
        assert response.get_json() == {
            "message": "The body is not valid JSON: Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1)"
        }


def test_reusing_a_retired_refresh_token_revokes_the_family(client, tokens):
    fresh = client.post("/refresh", headers=bearer(tokens["refresh_token"])).get_json()
    reuse = client.post("/refresh", headers=bearer(tokens["refresh_token"]))
    assert reuse.status_code == 401
    assert reuse.get_json() == {"message": "Token revoked"}
    # Everything descended from that sign-in is dead now, the thief's and ours.
    assert (
        client.post("/refresh", headers=bearer(fresh["refresh_token"])).status_code
        == 401
    )
    assert client.get("/files", headers=bearer(fresh["token"])).status_code == 401
    assert client.get("/files", headers=bearer(tokens["token"])).status_code == 401


def test_refresh_token_is_refused_everywhere_else(client, tokens):
    for path in ("/files", "/"):
        response = client.get(path, headers=bearer(tokens["refresh_token"]))
        assert response.status_code == 401
        assert response.get_json() == {"message": "Invalid token"}
    upload = client.post("/logout", headers=bearer(tokens["refresh_token"]))
    assert upload.status_code == 401


def test_access_token_is_refused_at_refresh(client, tokens):
    response = client.post("/refresh", headers=bearer(tokens["token"]))
    assert response.status_code == 401
    assert response.get_json() == {"message": "Invalid token"}


@pytest.mark.one_database
def test_refresh_without_a_token_is_401(client):
    response = client.post("/refresh", json={})
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token missing"}


def test_revocations_are_pruned_once_the_tokens_expire(app, client, runner, tokens):
    client.post("/logout", headers=bearer(tokens["token"]))
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(RevokedToken.jti))).scalar()
        for row in db.session.execute(db.select(RevokedToken)).scalars():
            row.expires_at = utcnow().replace(year=2020)
        db.session.commit()
    result = runner.invoke(args=["tokens", "prune"])
    assert result.exit_code == 0, result.output
    assert "Removed 2 expired revocations" in result.output
    with app.app_context():
        assert (
            db.session.execute(db.select(db.func.count(RevokedToken.jti))).scalar() == 0
        )


def test_prune_keeps_revocations_of_live_tokens(app, client, runner, tokens):
    client.post("/logout", headers=bearer(tokens["token"]))
    runner.invoke(args=["tokens", "prune"])
    assert client.get("/files", headers=bearer(tokens["token"])).status_code == 401


def test_tokens_signed_with_a_fallback_key_still_verify(database_url):
    app = make_app(database_url, SECRET_KEY_FALLBACKS=[OLD_KEY])
    try:
        with app.app_context():
            user = User(username="carol", password_hash="x")
            db.session.add(user)
            db.session.commit()
            claims = {"sub": str(user.id), "ver": user.token_version}
        client = app.test_client()
        old = make_token(claims, key=OLD_KEY)
        assert client.get("/files", headers=bearer(old)).status_code == 200
        # New tokens are signed with the current key.
        unknown = make_token(claims, key="k" * 8 + OLD_KEY)
        assert client.get("/files", headers=bearer(unknown)).status_code == 401
    finally:
        empty_tables(app)


def test_new_tokens_are_signed_with_the_current_key(database_url):
    app = make_app(database_url, SECRET_KEY_FALLBACKS=[OLD_KEY])
    try:
        from helpers import AuthActions

        actions = AuthActions(app, app.test_client())
        actions.create_user()
        token = actions.token()
        jwt.decode(token, SECRET_KEY, algorithms=["HS256"], issuer="lockbox")
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, OLD_KEY, algorithms=["HS256"], issuer="lockbox")
    finally:
        empty_tables(app)


def test_a_revoked_family_outlives_every_token_of_the_family(
    client, runner, auth, monkeypatch
):
    # Signed in three days ago: the first refresh token expires in four days.
    auth.create_user()
    now = utcnow()
    monkeypatch.setattr(session_tokens, "utcnow", lambda: now - timedelta(days=3))
    first = auth.login().get_json()
    monkeypatch.setattr(session_tokens, "utcnow", lambda: now)
    # The thief refreshes today (a token that lives seven more days), then the
    # owner's stale copy is presented: the family is revoked.
    stolen = client.post("/refresh", headers=bearer(first["refresh_token"])).get_json()
    reuse = client.post("/refresh", headers=bearer(first["refresh_token"]))
    assert reuse.status_code == 401
    # Five days on, the first token has expired and its revocation may go, but
    # the thief's token has not: pruning must keep what keeps it dead.
    monkeypatch.setattr(session_tokens, "utcnow", lambda: now + timedelta(days=5))
    assert runner.invoke(args=["tokens", "prune"]).exit_code == 0
    monkeypatch.setattr(session_tokens, "utcnow", lambda: now)
    again = client.post("/refresh", headers=bearer(stolen["refresh_token"]))
    assert again.status_code == 401
    assert again.get_json() == {"message": "Token revoked"}


def test_revoking_a_family_again_never_shortens_it(app, client, auth):
    auth.create_user()
    tokens = auth.login().get_json()
    client.post("/logout", headers=bearer(tokens["token"]))
    family = (
        "family:"
        + jwt.decode(tokens["token"], options={"verify_signature": False})["fam"]
    )
    with app.app_context():
        first = db.session.get(RevokedToken, family).expires_at
        db.session.remove()
    with app.test_request_context():
        session_tokens.revoke_family(family.removeprefix("family:"))
        db.session.commit()
        assert db.session.get(RevokedToken, family).expires_at >= first
