"""Basic-auth login, tokens, and the check_for_token decorator."""

import base64
import io
import json
import time

import jwt
import pytest

import passwords
from helpers import PASSWORD, SECRET_KEY, basic_auth, bearer, make_token, uploaded
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
    from helpers import AuthActions, empty_tables, make_app

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
    real_check = passwords.check_password_hash

    def counting_check(pwhash, password):
        calls.append(pwhash)
        return real_check(pwhash, password)

    monkeypatch.setattr(passwords, "check_password_hash", counting_check)
    auth.login("nobody", PASSWORD)
    assert len(calls) == 1
    assert calls[0].startswith("scrypt:")


@pytest.mark.one_database
def test_passwords_are_stored_as_scrypt_hashes_with_the_full_work_factor(app):
    # The users tests put in the database use a small work factor
    # (helpers.quick_hash); the app's own never does.
    stored = passwords.hash_password(PASSWORD)
    method, _, _ = stored.partition("$")
    name, cost, block_size, parallel = method.split(":")
    assert name == "scrypt" and int(cost) >= 2**15 and int(block_size) >= 8
    assert PASSWORD not in stored


@pytest.mark.one_database
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
    token = make_token({"sub": str(bob_id), "ver": auth.token_version("bob")})
    page = client.get(f"/?token={token}").get_data(as_text=True)
    assert "<strong>bob</strong>" in page


# --- the security review's findings ----------------------------------------


def upload_bytes(client, token, content: bytes, filename="f.bin"):
    """Upload ``content`` through the form upload; the response."""
    return client.post(
        "/upload",
        headers={"Authorization": f"Bearer {token}"},
        data={"inputFile": (io.BytesIO(content), filename)},
    )


def test_deleted_users_tokens_do_not_open_the_next_users_account(auth, client, runner):
    auth.create_user("alice")
    alices = auth.login("alice").get_json()
    result = runner.invoke(args=["users", "delete", "alice", "--yes"])
    assert result.exit_code == 0, result.output
    auth.create_user("bob")
    bobs_file = upload_bytes(client, auth.token("bob"), b"bob's secret").get_json()
    for path in ("/files", f"/files/{bobs_file['id']}/download"):
        response = client.get(
            path, headers={"Authorization": f"Bearer {alices['token']}"}
        )
        assert response.status_code == 401, (path, response.get_data())
    refreshed = client.post(
        "/refresh", headers={"Authorization": f"Bearer {alices['refresh_token']}"}
    )
    assert refreshed.status_code == 401


def test_user_and_file_ids_are_never_reused(app, auth, client, runner):
    first_user = auth.create_user("alice")
    runner.invoke(args=["users", "delete", "alice", "--yes"])
    second_user = auth.create_user("bob")
    assert second_user > first_user
    token = auth.token("bob")
    first_file = upload_bytes(client, token, b"one").get_json()["id"]
    client.delete(f"/files/{first_file}", headers={"Authorization": f"Bearer {token}"})
    second_file = upload_bytes(client, token, b"two").get_json()["id"]
    assert second_file > first_file


def test_a_token_opens_only_the_account_it_was_issued_for(app, auth, client):
    # Ids can come back anyway (a restore from backup, another engine): a token
    # for the same id but another account, with its own version, is refused.
    alice_id = auth.create_user("alice")
    token = auth.token("alice")
    with app.app_context():
        db.session.execute(db.delete(User))
        db.session.add(User(id=alice_id, username="mallory", password_hash="x"))
        db.session.commit()
    response = client.get("/files", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token revoked"}


def test_every_account_gets_its_own_random_token_version(auth):
    auth.create_user("alice")
    auth.create_user("bob")
    versions = {auth.token_version("alice"), auth.token_version("bob")}
    assert len(versions) == 2
    assert all(len(version) >= 16 for version in versions)


CROSS_SITE_HEADERS = [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
    {"Origin": "http://localhost.evil.example"},
]


@pytest.mark.parametrize("headers", CROSS_SITE_HEADERS)
def test_login_csrf_a_cross_site_sign_in_post_is_refused(auth, client, headers):
    auth.create_user()
    response = client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 403
    assert response.get_json() == {"message": "Cross-site request refused"}
    page = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD},
        headers={**headers, "Accept": "text/html"},
    )
    assert page.status_code == 403
    assert "Cross-site request refused" in page.get_data(as_text=True)
    assert "Location" not in page.headers


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, Postman, scripts
        {"Origin": "http://localhost"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_same_site_and_non_browser_sign_in_posts_work(auth, client, headers):
    auth.create_user()
    response = client.post(
        "/login", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 200


@pytest.mark.one_database
@pytest.mark.parametrize("path", ["/login", "/refresh"])
@pytest.mark.parametrize(
    "body", ["[" * 1100 + "]" * 1100, '{"a":' * 1100 + "1" + "}" * 1100]
)
def test_deeply_nested_json_is_a_400(client, path, body):
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {
        "message": "The body is not valid JSON: it is nested too deeply"
    }


LONE_SURROGATE = "\\ud800"  # as JSON writes it: a UTF-16 half with no other half


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/login", '{"username": "alice", "password": "%s"}'),
        ("/login", '{"username": "%s", "password": "x"}'),
        ("/refresh", '{"refresh_token": "%s"}'),
        ("/tokens", '{"name": "ci %s", "scopes": ["files:read"]}'),
        ("/files/{id}/shares", '{"password": "long enough %s"}'),
    ],
)
def test_a_lone_surrogate_in_json_is_a_clear_400(client, token, path, body):
    file_id = uploaded(client, token)["id"]
    response = client.post(
        path.format(id=file_id),
        data=body % LONE_SURROGATE,
        content_type="application/json",
        headers=bearer(token),
    )
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert message.startswith("The body is not valid JSON"), message
    assert "surrogate" in message and "codec" not in message, message


def test_session_cookie_is_same_site_lax(auth, client):
    auth.create_user()
    token = auth.token()
    response = client.post(f"/logout?token={token}", headers={"Accept": "text/html"})
    cookie = response.headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_over_https(auth, client):
    auth.create_user()
    token = auth.token()
    response = client.post(
        f"/logout?token={token}",
        headers={"Accept": "text/html"},
        base_url="https://localhost",
    )
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie
    assert "SameSite=Lax" in cookie
