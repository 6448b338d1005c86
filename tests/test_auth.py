"""Basic-auth login, tokens, and the check_for_token decorator."""

import base64
import json
import time

import jwt
import pytest

import authentication
from conftest import PASSWORD, SECRET_KEY, basic_auth, make_token
from models import User, db


def b64(data: dict) -> str:
    """Unpadded base64url of a JSON object, as a JWT segment."""
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_login_with_basic_auth_returns_a_bearer_token(auth):
    user_id = auth.create_user()
    response = auth.login()
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1200
    assert response.headers["Cache-Control"] == "no-store"
    claims = jwt.decode(
        body["token"], SECRET_KEY, algorithms=["HS256"], issuer="lockbox"
    )
    assert claims["sub"] == str(user_id)
    assert claims["exp"] - claims["iat"] == 1200
    assert len(claims["jti"]) == 32
    assert jwt.get_unverified_header(body["token"])["alg"] == "HS256"


def test_each_login_gets_a_distinct_token_id(auth):
    auth.create_user()
    first = jwt.decode(auth.token(), options={"verify_signature": False})
    second = jwt.decode(auth.token(), options={"verify_signature": False})
    assert first["jti"] != second["jti"]


def test_token_lifetime_follows_configuration(database_url):
    from conftest import AuthActions, empty_tables, make_app

    app = make_app(database_url, TOKEN_TTL_SECONDS=60)
    try:
        actions = AuthActions(app, app.test_client())
        actions.create_user()
        response = actions.login()
        assert response.get_json()["expires_in"] == 60
        claims = jwt.decode(
            response.get_json()["token"], options={"verify_signature": False}
        )
        assert claims["exp"] - claims["iat"] == 60
    finally:
        empty_tables(app)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic_auth("alice", "wrong password"),
        basic_auth("alice", ""),
        basic_auth("", PASSWORD),
        {"Authorization": "Bearer something"},
        {"Authorization": "Basic !!!not-base64"},
    ],
    ids=["none", "wrong-password", "empty-password", "empty-user", "bearer", "garbage"],
)
def test_login_without_valid_credentials_is_refused(auth, client, headers):
    auth.create_user()
    response = client.get("/login", headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"message": "Unable to verify"}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Login required"'


def test_unknown_user_and_wrong_password_look_the_same(auth):
    auth.create_user()
    unknown = auth.login("mallory", PASSWORD)
    wrong = auth.login("alice", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_data() == wrong.get_data()
    assert unknown.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"]


def test_unknown_user_still_costs_a_password_check(auth, monkeypatch):
    calls = []
    real_check = authentication.check_password_hash

    def counting_check(pwhash, password):
        calls.append(pwhash)
        return real_check(pwhash, password)

    monkeypatch.setattr(authentication, "check_password_hash", counting_check)
    auth.login("nobody", PASSWORD)
    assert len(calls) == 1
    assert calls[0].startswith("scrypt:")


def test_passwords_are_stored_as_scrypt_hashes(app, auth):
    user_id = auth.create_user()
    with app.app_context():
        stored = db.session.get(User, user_id).password_hash
    assert stored.startswith("scrypt:")
    assert PASSWORD not in stored


def test_index_without_token_says_token_missing(client):
    response = client.get("/")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token missing"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_index_with_token_in_query_shows_the_upload_form(client, token):
    response = client.get(f"/?token={token}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'name="inputFile"' in page
    assert '<textarea id="description" name="description"' in page
    assert f'action="/upload?token={token}"' in page
    assert 'enctype="multipart/form-data"' in page


def test_index_accepts_a_bearer_header(client, token):
    response = client.get("/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_bearer_with_nothing_after_it_is_invalid(client, token):
    response = client.get("/", headers={"Authorization": "Bearer "})
    assert response.status_code == 401
    assert response.get_json() == {"message": "Invalid token"}


@pytest.mark.parametrize(
    "bad_token",
    [
        "not-a-token",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9..",
        make_token(key="another-signing-key-that-is-long-enough-to-use"),
        make_token(algorithm="HS512"),
        make_token({"iss": "someone-else"}),
        make_token({"sub": "abc"}),
        make_token({"sub": "²"}),
        make_token({"iat": int(time.time()) + 3600}),
        b64({"alg": "none", "typ": "JWT"}) + "." + b64({"sub": "1"}) + ".",
        "x" * 5000,
    ],
    ids=[
        "junk",
        "three-junk-parts",
        "empty-parts",
        "other-key",
        "hs512",
        "wrong-issuer",
        "non-numeric-sub",
        "unicode-digit-sub",
        "issued-in-future",
        "alg-none",
        "oversized",
    ],
)
def test_bad_tokens_are_refused_as_invalid(client, token, bad_token):
    response = client.get(f"/?token={bad_token}")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Invalid token"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("claim", ["sub", "iat", "exp", "jti", "iss"])
def test_token_missing_a_required_claim_is_invalid(client, token, claim):
    user_id = jwt.decode(token, options={"verify_signature": False})["sub"]
    response = client.get(f"/?token={make_token({'sub': user_id}, drop=[claim])}")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Invalid token"}


def test_tampered_payload_is_invalid(client, token):
    header, _, signature = token.split(".")
    forged = b64(
        {"sub": "2", "iat": 0, "exp": 9999999999, "jti": "x", "iss": "lockbox"}
    )
    response = client.get(f"/?token={header}.{forged}.{signature}")
    assert response.get_json() == {"message": "Invalid token"}


def test_expired_token_says_token_expired(client, token):
    user_id = jwt.decode(token, options={"verify_signature": False})["sub"]
    past = int(time.time()) - 3600
    expired = make_token({"sub": user_id, "iat": past - 60, "exp": past})
    response = client.get(f"/?token={expired}")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token expired"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_of_a_deleted_user_is_refused(app, client, token):
    with app.app_context():
        db.session.execute(db.delete(User))
        db.session.commit()
    response = client.get(f"/?token={token}")
    assert response.status_code == 401
    assert response.get_json() == {"message": "Invalid token"}


def test_valid_token_signed_for_another_user_id_finds_that_user(app, auth, client):
    auth.create_user("alice")
    bob_id = auth.create_user("bob")
    token = make_token({"sub": str(bob_id)})
    page = client.get(f"/?token={token}").get_data(as_text=True)
    assert "<strong>bob</strong>" in page
