"""The admin area (admin.py, users.py, policies.py, invitations.py): roles and
the last administrator, who may open the admin area, managing accounts, the
invitation links that set a password once, disabled accounts (every
credential of theirs refused at once, on every instance), the server's
policies through the API and the page, and everything shared on the server."""

import hashlib
import re
import threading
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest

import notifications
import two_factor
from helpers import (
    HTML,
    PASSWORD,
    basic_auth,
    bearer,
    make_app,
    multipart_upload,
    new_upload,
    send_piece,
    tus_headers,
    tus_metadata,
    uploaded,
    user_id,
)
from models import (
    Delivery,
    FileChunk,
    Invitation,
    Share,
    StoredFile,
    User,
    db,
    utcnow,
)

ADMIN = "root"
NEEDS_ADMIN = {"message": "This needs an administrator"}
LAST_ADMIN = "This is the last administrator: make another one first"
INVITATION_GONE = {
    "message": "This link was used or has expired — ask your administrator "
    "for a new one"
}
NO_INVITATION = {"message": "No such invitation — ask your administrator for a link"}
ACCOUNT_DISABLED = {"message": "Account disabled"}
SIGN_IN_DISABLED = {"message": "This account is disabled — ask your administrator"}
NEW_PASSWORD = "a brand new password 42"
SHARE_PASSWORD = "open sesame 42"
INVITE_URL = re.compile(r"http://localhost(/invite/[A-Za-z0-9_-]{43})")
RENEW_COOKIE = "lockbox_renew"
DEFAULT_POLICIES = {
    "links_need_password": False,
    "max_link_seconds": None,
    "share_links": True,
    "upload_requests": True,
    "two_factor_required": False,
    "default_quota_bytes": None,
    "max_file_seconds": None,
}
LINKS_NEED_PASSWORD = "This server requires a password on every link"
LINKS_OFF = "Share links are turned off on this server"
REQUESTS_OFF = "Upload requests are turned off on this server"
SET_UP_FIRST = (
    "This account must set up two-factor sign-in first: sign in once on the "
    "sign-in page to set it up"
)
OWNER_DISABLED_LINK = (
    "The account that shared this is disabled for now: ask the person who sent it"
)
OWNER_DISABLED_REQUEST = (
    "The account that asked for these files is disabled for now: ask the person "
    "who sent the link"
)
MIB = 1024 * 1024
DAY = 86400


@pytest.fixture
def app_settings():
    """Webhooks may point at 127.0.0.1 (nothing is sent there in these tests)."""
    return {"WEBHOOK_ALLOW_HOSTS": frozenset({"127.0.0.1"})}


@pytest.fixture
def admin(auth, runner) -> str:
    """A session of root, an administrator."""
    auth.create_user(ADMIN)
    make_admin(runner, ADMIN)
    return auth.token(ADMIN)


@pytest.fixture
def elsewhere(app, database_url, app_settings):
    """A client of a second instance of the app on the same database (its
    answers are not checked against the description: what it refuses is the
    point)."""
    other = make_app(database_url, **app_settings)
    yield other.test_client()
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


# --- helpers ---------------------------------------------------------------


def make_admin(runner, name: str) -> None:
    result = runner.invoke(args=["users", "set-role", name, "admin"])
    assert result.exit_code == 0, result.output


def cli(runner, *args: str, input: str | None = None):
    """A ``flask`` command; its result."""
    return runner.invoke(args=list(args), input=input)


def refused_by_cli(result, message: str) -> None:
    """A command that failed cleanly, saying ``message``."""
    assert result.exit_code == 1, result.output
    assert f"Error: {message}" in result.output
    assert "Traceback" not in result.output


def user_row(app, name: str) -> User | None:
    """The account's row as stored now."""
    with app.app_context():
        user = db.session.execute(
            db.select(User).filter_by(username=name)
        ).scalar_one_or_none()
        if user is not None:
            db.session.expunge(user)
        return user


def update_user(app, name: str, **values) -> None:
    """Change an account's row straight in the database."""
    with app.app_context():
        db.session.execute(db.update(User).filter_by(username=name).values(**values))
        db.session.commit()


def add_user(app, name: str, **columns) -> int:
    """An account made straight in the database (e.g. one of single sign-on)."""
    with app.app_context():
        user = User(username=name, **columns)
        db.session.add(user)
        db.session.commit()
        return user.id


def accounts(client, admin) -> dict[str, dict]:
    """GET /admin/users, by name."""
    answer = client.get("/admin/users", headers=bearer(admin))
    assert answer.status_code == 200, answer.get_json()
    return {item["username"]: item for item in answer.get_json()["items"]}


def act(client, admin, app, name: str, action: str, **body):
    """POST /admin/users/<id of name>/<action> as the administrator."""
    return client.post(
        f"/admin/users/{user_id(app, name)}/{action}",
        json=body or None,
        headers=bearer(admin),
    )


def disable(client, admin, app, name: str = "alice") -> None:
    answer = act(client, admin, app, name, "disable")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["disabled"] is True


def enable(client, admin, app, name: str = "alice") -> None:
    answer = act(client, admin, app, name, "enable")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["disabled"] is False


def make_pat(client, session, scopes, name="ci") -> dict:
    """POST /tokens that must succeed; the answer's JSON."""
    answer = client.post(
        "/tokens", json={"name": name, "scopes": scopes}, headers=bearer(session)
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def make_share(client, token, file_id, **settings) -> dict:
    """POST /files/<id>/shares that must succeed; the answer's JSON."""
    answer = client.post(
        f"/files/{file_id}/shares", json=settings, headers=bearer(token)
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def share_form(client, token, file_id, **fields):
    """The share page's form, posted by a browser; the answer."""
    form = {"expires_in": "3600", "password": "", "max_downloads": "", **fields}
    return client.post(
        f"/files/{file_id}/shares?token={token}", data=form, headers=HTML
    )


def path_of(made: dict) -> str:
    """The path of a link, an upload request or an invitation."""
    return made["url"].removeprefix("http://localhost")


def make_request(client, token, **settings) -> dict:
    """POST /requests that must succeed; the answer's JSON."""
    settings.setdefault("title", "Scans")
    answer = client.post("/requests", json=settings, headers=bearer(token))
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def guest_upload(client, link: str, content: bytes = b"scan"):
    """A guest's tus creation through an upload request; the answer."""
    return client.post(
        f"{link}/uploads",
        headers=tus_headers(
            Upload_Length=len(content),
            Upload_Metadata=tus_metadata(filename="scan.pdf"),
        ),
    )


def policies_now(client, admin) -> dict:
    answer = client.get("/admin/policies", headers=bearer(admin))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def set_policies(client, admin, **values) -> dict:
    """POST /admin/policies as JSON, which must succeed; the policies now."""
    answer = client.post("/admin/policies", json=values, headers=bearer(admin))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def policy_form(client, admin, **fields) -> None:
    """The policies page's form, posted by a browser (a checkbox not given is
    off), which must be accepted."""
    answer = client.post(f"/admin/policies?token={admin}", data=fields, headers=HTML)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert urlsplit(answer.headers["Location"]).path == "/admin/policies"


def invite(client, admin, username="dave", **fields) -> str:
    """A new account made through the API; the path of its invitation."""
    answer = client.post(
        "/admin/users", json={"username": username, **fields}, headers=bearer(admin)
    )
    assert answer.status_code == 201, answer.get_json()
    return invitation_path(answer.get_json()["invitation"])


def invitation_path(invitation: dict) -> str:
    match = INVITE_URL.fullmatch(invitation["url"])
    assert match, invitation
    return match[1]


def set_password(client, path: str, password=NEW_PASSWORD, confirm=None):
    """POST an invitation's new password as an API client; the answer."""
    body = {"password": password, "confirm": password if confirm is None else confirm}
    return client.post(path, json=body)


def page_sign_in(client, username="alice") -> str:
    """Sign in with the page's form ("keep me signed in"); the renewal cookie."""
    form = {"username": username, "password": PASSWORD, "remember": "1"}
    answer = client.post("/login", data=form, headers=HTML)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return client.get_cookie(RENEW_COOKIE, path="/renew").value


def renew(client) -> str:
    """GET /renew as a browser with whatever cookie it holds; where it is sent."""
    answer = client.get("/renew?next=/", headers=HTML)
    assert answer.status_code == 303
    return answer.headers["Location"]


# --- roles ------------------------------------------------------------------


def test_users_bootstrap_makes_the_first_user_an_administrator(client, runner):
    result = cli(runner, "users", "bootstrap", "--name", "boss")
    assert result.exit_code == 0, result.output
    password = re.search(r"password: (\S+)", result.output)[1]
    signed_in = client.get("/login", headers=basic_auth("boss", password))
    session = signed_in.get_json()["token"]
    listed = client.get("/admin/users", headers=bearer(session))
    assert listed.status_code == 200
    assert [
        (each["username"], each["role"]) for each in listed.get_json()["items"]
    ] == [("boss", "admin")]


def test_users_set_role_grants_and_takes_back_the_admin_role(
    client, runner, admin, token
):
    assert client.get("/admin/users", headers=bearer(token)).status_code == 403
    granted = cli(runner, "users", "set-role", "alice", "admin")
    assert granted.exit_code == 0 and "alice is now an administrator" in granted.output
    # The role is read on every request: the same session opens it now.
    assert client.get("/admin/users", headers=bearer(token)).status_code == 200
    taken = cli(runner, "users", "set-role", "alice", "user")
    assert taken.exit_code == 0 and "alice is now a user" in taken.output
    answer = client.get("/admin/users", headers=bearer(token))
    assert answer.status_code == 403 and answer.get_json() == NEEDS_ADMIN
    refused_by_cli(cli(runner, "users", "set-role", "nobody", "admin"), "No user")


def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted_by_the_cli(
    app, auth, runner, admin
):
    # alice is an administrator too, but disabled: she does not count.
    auth.create_user("alice")
    make_admin(runner, "alice")
    assert cli(runner, "users", "disable", "alice").exit_code == 0
    for args in (
        ["set-role", ADMIN, "user"],
        ["disable", ADMIN],
        ["delete", ADMIN, "--yes"],
    ):
        refused_by_cli(cli(runner, "users", *args), LAST_ADMIN)
    root = user_row(app, ADMIN)
    assert root.role == "admin" and root.disabled_at is None
    # With alice enabled again, root may step down.
    assert cli(runner, "users", "enable", "alice").exit_code == 0
    assert cli(runner, "users", "set-role", ADMIN, "user").exit_code == 0
    assert user_row(app, ADMIN).role == "user"


def test_an_admin_cannot_demote_disable_or_delete_themself_through_the_api(
    app, client, auth, runner, admin
):
    # Another administrator exists: only the rule about oneself stands in the way.
    auth.create_user("bob")
    make_admin(runner, "bob")
    for action, body, what in [
        ("role", {"role": "user"}, "change the role of"),
        ("disable", {}, "disable"),
        ("delete", {}, "delete"),
    ]:
        answer = act(client, admin, app, ADMIN, action, **body)
        assert answer.status_code == 409, action
        assert answer.get_json() == {
            "message": f"You cannot {what} your own account here"
        }
    root = user_row(app, ADMIN)
    assert root.role == "admin" and root.disabled_at is None
    assert client.get("/admin/users", headers=bearer(admin)).status_code == 200


# --- who may open the admin area -------------------------------------------

ADMIN_READS = ["/admin/users", "/admin/shared", "/admin/policies", "/admin/audit"]


def test_a_users_session_is_refused_the_admin_area(app, client, admin, token):
    for path in ADMIN_READS:
        answer = client.get(path, headers=bearer(token))
        assert answer.status_code == 403, path
        assert answer.get_json() == NEEDS_ADMIN
    for action, body in [("disable", {}), ("role", {"role": "user"})]:
        answer = act(client, token, app, ADMIN, action, **body)
        assert answer.status_code == 403 and answer.get_json() == NEEDS_ADMIN
    changed = client.post(
        "/admin/policies", json={"share_links": False}, headers=bearer(token)
    )
    assert changed.status_code == 403
    root = user_row(app, ADMIN)
    assert root.role == "admin" and root.disabled_at is None
    assert policies_now(client, admin) == DEFAULT_POLICIES


def test_an_admins_session_opens_the_admin_area_and_its_pages(client, admin):
    for path in ADMIN_READS:
        assert client.get(path, headers=bearer(admin)).status_code == 200, path
        page = client.get(f"{path}?token={admin}", headers=HTML)
        assert page.status_code == 200 and page.mimetype == "text/html", path


def test_an_admins_token_with_the_admin_scope_opens_the_admin_area(
    client, runner, admin
):
    made = make_pat(client, admin, ["admin"])["token"]
    printed = cli(
        runner, "tokens", "create", ADMIN, "--name", "ops", "--scopes", "admin"
    )
    assert printed.exit_code == 0, printed.output
    from_cli = printed.stdout.strip()
    for pat in (made, from_cli):
        assert client.get("/admin/users", headers=bearer(pat)).status_code == 200
    changed = client.post(
        "/admin/policies", json={"share_links": False}, headers=bearer(made)
    )
    assert changed.status_code == 200 and changed.get_json()["share_links"] is False


def test_an_admins_token_without_the_admin_scope_is_refused_the_admin_area(
    client, admin
):
    pat = make_pat(client, admin, ["files:read", "files:write", "shares:write"])
    answer = client.get("/admin/users", headers=bearer(pat["token"]))
    assert answer.status_code == 403
    assert answer.get_json() == {"message": "Token lacks the admin scope"}
    assert client.get("/files", headers=bearer(pat["token"])).status_code == 200


def test_a_user_cannot_make_a_token_with_the_admin_scope(client, runner, token):
    answer = client.post(
        "/tokens", json={"name": "ci", "scopes": ["admin"]}, headers=bearer(token)
    )
    assert answer.status_code == 403
    assert answer.get_json() == {
        "message": "Only an administrator may make a token with the admin scope"
    }
    result = cli(
        runner,
        "tokens",
        "create",
        "alice",
        "--name",
        "ci",
        "--scopes",
        "files:read,admin",
    )
    refused_by_cli(
        result, "Only an administrator may make a token with the admin scope"
    )
    assert client.get("/tokens", headers=bearer(token)).get_json()["items"] == []


def test_a_demoted_admins_admin_token_is_refused_at_once(
    app, client, admin, runner, token
):
    make_admin(runner, "alice")
    pat = make_pat(client, token, ["admin"])["token"]
    assert client.get("/admin/users", headers=bearer(pat)).status_code == 200
    demoted = act(client, admin, app, "alice", "role", role="user")
    assert demoted.status_code == 200 and demoted.get_json()["role"] == "user"
    answer = client.get("/admin/users", headers=bearer(pat))
    # Demoting deleted it: it is no token at all now.
    assert answer.status_code == 401 and answer.get_json() == {
        "message": "Invalid token"
    }


def test_a_demoted_admins_admin_token_is_refused_even_where_its_other_scopes_reach(
    client, runner, admin, token
):
    make_admin(runner, "alice")
    with_admin = make_pat(client, token, ["files:read", "admin"])["token"]
    without = make_pat(client, token, ["files:read"])["token"]
    for pat in (with_admin, without):
        assert client.get("/files", headers=bearer(pat)).status_code == 200
    assert cli(runner, "users", "set-role", "alice", "user").exit_code == 0
    answer = client.get("/files", headers=bearer(with_admin))
    assert answer.status_code == 401 and answer.get_json() == {
        "message": "Invalid token"
    }
    # Her other tokens, and her session, are not touched.
    assert client.get("/files", headers=bearer(without)).status_code == 200
    assert client.get("/files", headers=bearer(token)).status_code == 200
    assert client.get("/files", headers=bearer(without)).status_code == 200
    assert client.get("/files", headers=bearer(token)).status_code == 200


# A leaked admin token, its owner demoted to stop it, must not come back
# with the role: demoting deletes the account's admin tokens.
def test_a_revoked_admin_token_stays_revoked_when_its_owner_is_an_admin_again(
    client, runner, admin, token
):
    make_admin(runner, "alice")
    pat = make_pat(client, token, ["admin"])["token"]
    assert cli(runner, "users", "set-role", "alice", "user").exit_code == 0
    assert client.get("/admin/users", headers=bearer(pat)).status_code == 401
    make_admin(runner, "alice")
    assert client.get("/admin/users", headers=bearer(pat)).status_code == 401


# --- accounts ----------------------------------------------------------------


def test_the_user_list_shows_usage_quota_last_sign_in_and_sign_in_ways(
    app, client, auth, admin, token
):
    before = utcnow()
    uploaded(client, token, b"twelve bytes", "a.txt")
    auth.create_user("bob")
    update_user(app, "bob", totp_enabled_at=utcnow())
    add_user(
        app,
        "carol",
        password_hash=None,
        oidc_issuer="https://id.example.org",
        oidc_subject="carol-1",
    )
    listed = accounts(client, admin)
    assert list(listed) == ["alice", "bob", "carol", ADMIN]
    alice = listed["alice"]
    assert alice["used_bytes"] == 12 and alice["files"] == 1
    assert alice["quota_bytes"] is None and alice["quota_is_default"] is True
    assert alice["role"] == "user" and alice["disabled"] is False
    assert alice["has_password"] is True and alice["single_sign_on"] is False
    assert alice["two_factor"] is False
    # alice signed in (the token fixture), a moment ago; bob never did.
    signed_in = datetime.fromisoformat(alice["last_sign_in_at"])
    assert before - timedelta(seconds=5) <= signed_in <= utcnow()
    bob = listed["bob"]
    assert bob["last_sign_in_at"] is None and bob["two_factor"] is True
    assert bob["used_bytes"] == 0 and bob["files"] == 0
    carol = listed["carol"]
    assert carol["single_sign_on"] is True and carol["has_password"] is False
    assert listed[ADMIN]["role"] == "admin"
    assert listed[ADMIN]["last_sign_in_at"] is not None
    one = client.get(f"/admin/users/{alice['id']}", headers=bearer(admin))
    assert one.status_code == 200 and one.get_json() == alice
    page = client.get(f"/admin/users?token={admin}", headers=HTML)
    assert page.status_code == 200
    assert all(name in page.get_data(as_text=True) for name in listed)


def test_making_a_user_answers_201_with_their_invitation_link(app, client, admin):
    before = utcnow()
    answer = client.post(
        "/admin/users",
        json={"username": "dave", "email": "dave@example.org", "quota": "2 GiB"},
        headers=bearer(admin),
    )
    assert answer.status_code == 201
    assert answer.headers["Cache-Control"] == "no-store"
    user, invitation = answer.get_json()["user"], answer.get_json()["invitation"]
    assert user["username"] == "dave" and user["role"] == "user"
    assert user["email"] == "dave@example.org" and user["has_password"] is False
    assert user["quota_bytes"] == 2 * 1024**3 and user["quota_is_default"] is False
    assert invitation["emailed"] is False
    expires_at = datetime.fromisoformat(invitation["expires_at"])
    assert before + timedelta(days=7) <= expires_at <= utcnow() + timedelta(days=7)
    path = invitation_path(invitation)
    page = client.get(path, headers=HTML)
    assert page.status_code == 200 and "dave" in page.get_data(as_text=True)
    # Only a hash of the secret is kept.
    secret = path.removeprefix("/invite/")
    with app.app_context():
        stored = db.session.execute(db.select(Invitation)).scalar_one()
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert stored.user_id == user["id"] and stored.purpose == "invite"
    made_admin = client.post(
        "/admin/users",
        json={"username": "erin", "role": "admin"},
        headers=bearer(admin),
    )
    assert made_admin.status_code == 201
    assert made_admin.get_json()["user"]["role"] == "admin"


def test_the_new_user_form_shows_the_invitation_link_once(client, admin):
    answer = client.post(
        f"/admin/users?token={admin}",
        data={"username": "dave", "email": "", "quota": "", "role": "user"},
        headers=HTML,
    )
    assert answer.status_code == 201 and answer.mimetype == "text/html"
    assert answer.headers["Cache-Control"] == "no-store"
    path = INVITE_URL.search(answer.get_data(as_text=True))[1]
    assert set_password(client, path).status_code == 204
    assert accounts(client, admin)["dave"]["quota_is_default"] is True


def test_a_taken_name_is_a_409_whatever_its_case(client, admin, token):
    for name in ("alice", "ALICE", "Alice", "Root"):
        answer = client.post(
            "/admin/users", json={"username": name}, headers=bearer(admin)
        )
        assert answer.status_code == 409, name
        assert answer.get_json() == {"message": f"A user named {name} already exists"}
    assert list(accounts(client, admin)) == ["alice", ADMIN]


def test_a_bad_new_user_is_a_400_that_says_why(client, admin):
    for fields, message in [
        ({"username": "-dash"}, "letters, digits and _ . @ + -"),
        ({"username": "with space"}, "letters, digits and _ . @ + -"),
        ({"username": ""}, "username must be 1 to 80 characters"),
        ({"username": "a" * 81}, "username must be 1 to 80 characters"),
        ({}, "username: Missing data for required field."),
        ({"username": "dave", "email": "not-an-address"}, "email must be an e-mail"),
        ({"username": "dave", "quota": "lots"}, "quota: 'lots' is not a size"),
        ({"username": "dave", "quota": "-1"}, "quota: '-1' is not a size"),
        ({"username": "dave", "quota": "1" * 33}, "quota must be at most 32"),
        ({"username": "dave", "role": "root"}, "role must be user or admin"),
    ]:
        answer = client.post("/admin/users", json=fields, headers=bearer(admin))
        assert answer.status_code == 400, fields
        assert message in answer.get_json()["message"], (fields, answer.get_json())
    assert list(accounts(client, admin)) == [ADMIN]


@pytest.mark.parametrize("app_settings", [{"STORAGE_QUOTA_BYTES": 1000}])
def test_a_quota_an_admin_sets_holds_on_upload(app, client, admin, token):
    alice = f"/admin/users/{user_id(app)}/quota"
    answer = client.post(alice, json={"quota": "2 KiB"}, headers=bearer(admin))
    assert answer.status_code == 200
    assert answer.get_json()["quota_bytes"] == 2048
    assert answer.get_json()["quota_is_default"] is False
    # More than the server's default, within hers.
    uploaded(client, token, b"x" * 1500, "first.bin")
    refused = multipart_upload(client, token, b"y" * 600, "second.bin")
    assert refused.status_code == 413
    assert "of 2.0 KiB used" in refused.get_json()["message"]
    # 0: no limit at all, not even the server's default.
    no_limit = client.post(alice, json={"quota": "0"}, headers=bearer(admin))
    assert no_limit.get_json()["quota_bytes"] is None
    assert no_limit.get_json()["quota_is_default"] is False
    uploaded(client, token, b"z" * 3000, "large.bin")
    # "default" and null: the server's STORAGE_QUOTA_BYTES again.
    for value in ("default", None):
        back = client.post(alice, json={"quota": value}, headers=bearer(admin))
        assert back.status_code == 200
        assert back.get_json()["quota_bytes"] == 1000
        assert back.get_json()["quota_is_default"] is True
    assert multipart_upload(client, token, b"w", "over.bin").status_code == 413
    assert accounts(client, admin)["alice"]["used_bytes"] == 4500


def test_a_bad_quota_is_a_400_and_changes_nothing(app, client, admin, token):
    alice = f"/admin/users/{user_id(app)}/quota"
    set_to = client.post(alice, json={"quota": "1 MiB"}, headers=bearer(admin))
    assert set_to.status_code == 200
    for value, message in [
        ("lots", "quota: 'lots' is not a size"),
        ("-5", "quota: '-5' is not a size"),
        ("5 XB", "quota: '5 XB' is not a size"),
        ("1" * 33, "quota must be at most 32 characters"),
        (5, "quota: Not a valid string."),
    ]:
        answer = client.post(alice, json={"quota": value}, headers=bearer(admin))
        assert answer.status_code == 400, value
        assert message in answer.get_json()["message"], answer.get_json()
    missing = client.post(alice, json={}, headers=bearer(admin))
    assert missing.status_code == 400
    assert accounts(client, admin)["alice"]["quota_bytes"] == MIB


# "99999999999999999999 TiB" is about 1.1e32 bytes, which no BigInteger
# column holds: a 400 that says the quota is too large, not a 500.
def test_a_quota_too_large_to_store_is_a_400(app, client, admin, token):
    alice = f"/admin/users/{user_id(app)}/quota"
    answer = client.post(
        alice, json={"quota": "99999999999999999999 TiB"}, headers=bearer(admin)
    )
    assert answer.status_code == 400


def test_signing_a_user_out_everywhere_ends_their_sessions_and_tokens(
    app, client, auth, admin, token
):
    pat = make_pat(client, token, ["files:read"])["token"]
    answer = act(client, admin, app, "alice", "sign-out")
    assert answer.status_code == 200 and answer.get_json()["username"] == "alice"
    refused = client.get("/files", headers=bearer(token))
    assert refused.status_code == 401 and refused.get_json() == {
        "message": "Token revoked"
    }
    assert client.get("/files", headers=bearer(pat)).status_code == 401
    # She may sign in again; the administrator was not touched.
    assert client.get("/files", headers=bearer(auth.token())).status_code == 200
    assert client.get("/admin/users", headers=bearer(admin)).status_code == 200


def test_an_admin_makes_a_user_an_admin_and_back(app, client, admin, token):
    made = act(client, admin, app, "alice", "role", role="admin")
    assert made.status_code == 200 and made.get_json()["role"] == "admin"
    assert client.get("/admin/users", headers=bearer(token)).status_code == 200
    back = act(client, admin, app, "alice", "role", role="user")
    assert back.status_code == 200 and back.get_json()["role"] == "user"
    assert client.get("/admin/users", headers=bearer(token)).status_code == 403
    bad = act(client, admin, app, "alice", "role", role="root")
    assert bad.status_code == 400
    assert "role must be user or admin" in bad.get_json()["message"]
    assert user_row(app, "alice").role == "user"


def test_deleting_a_user_removes_them_and_their_files(app, client, admin, token):
    uploaded(client, token, b"alice's" * 1000, "hers.bin")
    kept = uploaded(client, admin, b"root's", "kept.bin")["id"]
    alice = user_id(app)
    answer = client.post(f"/admin/users/{alice}/delete", headers=bearer(admin))
    assert answer.status_code == 204
    assert client.get("/files", headers=bearer(token)).status_code == 401
    assert list(accounts(client, admin)) == [ADMIN]
    with app.app_context():
        files = db.session.execute(db.select(StoredFile.id)).scalars().all()
        chunk_files = set(db.session.execute(db.select(FileChunk.file_id)).scalars())
    assert files == [kept] and chunk_files == {kept}
    again = client.post(f"/admin/users/{alice}/delete", headers=bearer(admin))
    assert again.status_code == 404 and again.get_json() == {"message": "No such user"}


def test_the_user_form_buttons_send_a_browser_back_to_the_page(
    app, client, admin, token
):
    alice = user_id(app)
    answer = client.post(
        f"/admin/users/{alice}/quota?token={admin}",
        data={"quota": "5 MiB"},
        headers=HTML,
    )
    assert answer.status_code == 303
    assert urlsplit(answer.headers["Location"]).path == f"/admin/users/{alice}"
    page = client.get(answer.headers["Location"], headers=HTML)
    assert "Quota of alice changed." in page.get_data(as_text=True)
    assert accounts(client, admin)["alice"]["quota_bytes"] == 5 * MIB
    gone = client.post(f"/admin/users/{alice}/delete?token={admin}", headers=HTML)
    assert gone.status_code == 303
    assert urlsplit(gone.headers["Location"]).path == "/admin/users"
    assert user_row(app, "alice") is None


# --- invitations ---------------------------------------------------------------


def test_an_invitation_sets_a_password_once(client, admin):
    path = invite(client, admin)
    assert (
        client.get("/login", headers=basic_auth("dave", NEW_PASSWORD)).status_code
        == 401
    )
    page = client.get(path, headers=HTML)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'value="dave"' in page.get_data(as_text=True)
    assert set_password(client, path).status_code == 204
    assert (
        client.get("/login", headers=basic_auth("dave", NEW_PASSWORD)).status_code
        == 200
    )
    again = set_password(client, path, "another password 7")
    assert again.status_code == 410 and again.get_json() == INVITATION_GONE
    assert client.get(path).status_code == 410
    assert client.get(path, headers=HTML).status_code == 410
    # The first password stands.
    assert (
        client.get("/login", headers=basic_auth("dave", NEW_PASSWORD)).status_code
        == 200
    )


@pytest.mark.parametrize("app_settings", [{"INVITATION_SECONDS": 300}])
def test_an_expired_invitation_is_gone(app, client, admin):
    before = utcnow()
    answer = client.post(
        "/admin/users", json={"username": "dave"}, headers=bearer(admin)
    )
    invitation = answer.get_json()["invitation"]
    expires_at = datetime.fromisoformat(invitation["expires_at"])
    assert (
        before + timedelta(seconds=300)
        <= expires_at
        <= utcnow() + timedelta(seconds=300)
    )
    path = invitation_path(invitation)
    assert client.get(path, headers=HTML).status_code == 200
    with app.app_context():
        db.session.execute(
            db.update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    gone = client.get(path)
    assert gone.status_code == 410 and gone.get_json() == INVITATION_GONE
    assert set_password(client, path).status_code == 410
    assert user_row(app, "dave").password_hash is None


def test_a_garbled_invitation_is_not_found(client, admin):
    path = invite(client, admin)
    secret = path.removeprefix("/invite/")
    changed = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for wrong in (changed, secret[:-1], secret + "A", "x"):
        for answer in (
            client.get(f"/invite/{wrong}"),
            set_password(client, f"/invite/{wrong}"),
        ):
            assert answer.status_code == 404, wrong
            assert answer.get_json() == NO_INVITATION
    assert set_password(client, path).status_code == 204


def test_passwords_that_differ_are_a_400_and_the_link_still_works(client, admin):
    path = invite(client, admin)
    for body, message in [
        (
            {"password": NEW_PASSWORD, "confirm": "a different one 42"},
            "The two passwords are not the same",
        ),
        (
            {"password": "short", "confirm": "short"},
            "password: password must be 8 to 1024 characters",
        ),
        ({"password": NEW_PASSWORD}, "confirm: Missing data for required field."),
    ]:
        answer = client.post(path, json=body)
        assert answer.status_code == 400, body
        assert answer.get_json() == {"message": message}
    assert set_password(client, path).status_code == 204


def test_a_reset_link_replaces_the_older_one_and_using_it_ends_every_session(
    app, client, auth, admin, token
):
    pat = make_pat(client, token, ["files:read"])["token"]
    first = act(client, admin, app, "alice", "reset-password")
    assert first.status_code == 201 and set(first.get_json()) == {
        "url",
        "expires_at",
        "emailed",
    }
    second = act(client, admin, app, "alice", "reset-password")
    old, new = invitation_path(first.get_json()), invitation_path(second.get_json())
    assert set_password(client, old).status_code == 410
    # A reset link changes nothing until it is used.
    assert client.get("/files", headers=bearer(token)).status_code == 200
    assert auth.login("alice", PASSWORD).status_code == 200
    assert set_password(client, new).status_code == 204
    ended = client.get("/files", headers=bearer(token))
    assert ended.status_code == 401 and ended.get_json() == {"message": "Token revoked"}
    assert client.get("/files", headers=bearer(pat)).status_code == 401
    assert auth.login("alice", PASSWORD).status_code == 401
    assert auth.login("alice", NEW_PASSWORD).status_code == 200
    with app.app_context():
        purposes = db.session.execute(db.select(Invitation.purpose)).scalars().all()
    assert purposes == ["reset", "reset"]


# A password set through an invitation ends the account's tokens as every
# new password does (session_tokens.revoke_all_tokens): no list shows them.
def test_a_password_set_through_an_invitation_deletes_the_accounts_tokens(
    app, client, auth, admin, token
):
    make_pat(client, token, ["files:read"])
    reset = act(client, admin, app, "alice", "reset-password")
    assert set_password(client, invitation_path(reset.get_json())).status_code == 204
    session = auth.token(password=NEW_PASSWORD)
    assert client.get("/tokens", headers=bearer(session)).get_json()["items"] == []
    assert shared(client, admin)["tokens"] == []


def test_the_invitation_of_a_disabled_account_is_gone(app, client, admin):
    path = invite(client, admin)
    disable(client, admin, app, "dave")
    for answer in (client.get(path), set_password(client, path)):
        assert answer.status_code == 410 and answer.get_json() == INVITATION_GONE
    reset = act(client, admin, app, "dave", "reset-password")
    assert reset.status_code == 409
    assert reset.get_json() == {"message": "The account is disabled: enable it first"}
    assert user_row(app, "dave").password_hash is None


def test_the_invitation_page_sets_the_password_and_sends_on_to_sign_in(client, admin):
    path = invite(client, admin)
    page = client.get(path, headers=HTML).get_data(as_text=True)
    assert f'action="{path}"' in page
    differ = client.post(
        path,
        data={"password": NEW_PASSWORD, "confirm": "not the same 42"},
        headers=HTML,
    )
    assert differ.status_code == 400 and differ.mimetype == "text/html"
    text = differ.get_data(as_text=True)
    assert "The two passwords are not the same" in text and f'action="{path}"' in text
    answer = client.post(
        path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, headers=HTML
    )
    assert answer.status_code == 303
    assert urlsplit(answer.headers["Location"]).path == "/login"
    landed = client.get(answer.headers["Location"], headers=HTML)
    assert "Your password is set: sign in with it." in landed.get_data(as_text=True)
    signed_in = client.get("/login", headers=basic_auth("dave", NEW_PASSWORD))
    assert signed_in.status_code == 200 and signed_in.get_json()["token"]


# --- a disabled account: nothing of it opens, on any instance --------------


def test_a_disabled_accounts_session_is_refused_at_once_on_every_instance(
    app, client, admin, token, elsewhere
):
    assert elsewhere.get("/files", headers=bearer(token)).status_code == 200
    disable(client, admin, app)
    for instance in (elsewhere, client):
        answer = instance.get("/files", headers=bearer(token))
        assert answer.status_code == 401 and answer.get_json() == ACCOUNT_DISABLED
    # A browser is sent to sign in, told why.
    page = elsewhere.get(f"/?token={token}", headers=HTML, follow_redirects=True)
    assert page.request.path == "/login"
    assert "Your account is disabled — ask your administrator" in page.get_data(
        as_text=True
    )
    assert accounts(client, admin)["alice"]["disabled"] is True
    enable(client, admin, app)
    assert elsewhere.get("/files", headers=bearer(token)).status_code == 200


def test_a_disabled_accounts_refresh_token_is_refused_on_every_instance(
    app, client, auth, admin, elsewhere
):
    auth.create_user()
    pair = auth.login().get_json()
    renewed = elsewhere.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200
    refresh_token = renewed.get_json()["refresh_token"]
    disable(client, admin, app)
    answer = elsewhere.post("/refresh", json={"refresh_token": refresh_token})
    assert answer.status_code == 401 and answer.get_json() == ACCOUNT_DISABLED
    enable(client, admin, app)
    # Refused, it was not used up.
    again = elsewhere.post("/refresh", json={"refresh_token": refresh_token})
    assert again.status_code == 200
    fresh = again.get_json()["token"]
    assert client.get("/files", headers=bearer(fresh)).status_code == 200


def test_a_disabled_accounts_personal_token_is_refused_on_every_instance(
    app, client, admin, token, elsewhere
):
    pat = make_pat(client, token, ["files:read"])["token"]
    assert elsewhere.get("/files", headers=bearer(pat)).status_code == 200
    disable(client, admin, app)
    answer = elsewhere.get("/files", headers=bearer(pat))
    assert answer.status_code == 401 and answer.get_json() == ACCOUNT_DISABLED
    enable(client, admin, app)
    assert elsewhere.get("/files", headers=bearer(pat)).status_code == 200


def test_a_disabled_accounts_share_link_is_refused_on_every_instance(
    app, client, admin, token, elsewhere
):
    file_id = uploaded(client, token, b"shared bytes", "shared.txt")["id"]
    link = path_of(make_share(client, token, file_id))
    assert elsewhere.get(link).status_code == 200
    disable(client, admin, app)
    for path in (link, link + "/download"):
        # Not "gone": it works again once the account is enabled.
        answer = elsewhere.get(path)
        assert answer.status_code == 403, path
        assert answer.get_json() == {"message": OWNER_DISABLED_LINK}
    shared = client.get("/admin/shared", headers=bearer(admin)).get_json()
    assert shared["links"][0]["status"] == "disabled"
    enable(client, admin, app)
    download = elsewhere.get(link + "/download")
    assert download.status_code == 200 and download.data == b"shared bytes"


def test_a_disabled_accounts_upload_key_is_refused_on_every_instance(
    app, client, admin, token, elsewhere
):
    path = new_upload(client, token, 10)
    assert elsewhere.head(path, headers=tus_headers()).status_code == 200
    assert send_piece(elsewhere, path, 0, b"abc").status_code == 204
    disable(client, admin, app)
    assert elsewhere.head(path, headers=tus_headers()).status_code == 404
    assert send_piece(elsewhere, path, 3, b"def").status_code == 404
    # Her own (refused) token along with the key opens nothing either.
    assert elsewhere.head(path, headers=tus_headers(token)).status_code == 404
    assert send_piece(elsewhere, path, 3, b"def", token).status_code == 404
    enable(client, admin, app)
    assert send_piece(elsewhere, path, 3, b"defghij").status_code == 204


def test_a_disabled_accounts_upload_request_is_refused_on_every_instance(
    app, client, admin, token, elsewhere
):
    link = path_of(make_request(client, token))
    assert elsewhere.get(link).status_code == 200
    disable(client, admin, app)
    for answer in (elsewhere.get(link), guest_upload(elsewhere, link)):
        assert answer.status_code == 403
        assert answer.get_json() == {"message": OWNER_DISABLED_REQUEST}
    enable(client, admin, app)
    assert guest_upload(elsewhere, link).status_code == 201


def test_a_disabled_accounts_renewal_cookie_is_refused_on_every_instance(
    app, client, admin, elsewhere, auth
):
    auth.create_user()
    elsewhere.set_cookie(RENEW_COOKIE, page_sign_in(client), path="/renew")
    renewed = renew(elsewhere)
    assert urlsplit(renewed).path == "/"
    fresh = re.search(r"[?&]token=([^&]+)", renewed)[1]
    assert elsewhere.get("/files", headers=bearer(fresh)).status_code == 200
    disable(client, admin, app)
    assert urlsplit(renew(elsewhere)).path == "/login"
    assert elsewhere.get("/files", headers=bearer(fresh)).status_code == 401


def test_a_disabled_account_cannot_sign_in_on_any_instance(
    app, client, admin, auth, elsewhere
):
    auth.create_user()
    disable(client, admin, app)
    basic = elsewhere.get("/login", headers=basic_auth("alice", PASSWORD))
    assert basic.status_code == 403 and basic.get_json() == SIGN_IN_DISABLED
    body = {"username": "alice", "password": PASSWORD}
    posted = client.post("/login", json=body)
    assert posted.status_code == 403 and posted.get_json() == SIGN_IN_DISABLED
    page = client.post("/login", data=body, headers=HTML)
    assert page.status_code == 403
    assert SIGN_IN_DISABLED["message"] in page.get_data(as_text=True)
    assert client.get_cookie(RENEW_COOKIE, path="/renew") is None
    # A wrong password is still just a wrong password.
    wrong = elsewhere.get("/login", headers=basic_auth("alice", "not the password"))
    assert wrong.status_code == 401
    enable(client, admin, app)
    signed_in = elsewhere.get("/login", headers=basic_auth("alice", PASSWORD))
    assert signed_in.status_code == 200


def test_disabling_through_the_cli_refuses_as_the_api_does(client, runner, token):
    assert cli(runner, "users", "disable", "alice").exit_code == 0
    answer = client.get("/files", headers=bearer(token))
    assert answer.status_code == 401 and answer.get_json() == ACCOUNT_DISABLED
    assert "alice\tuser\tDISABLED + password" in cli(runner, "users", "list").output
    assert cli(runner, "users", "enable", "alice").exit_code == 0
    assert client.get("/files", headers=bearer(token)).status_code == 200


# --- policies -----------------------------------------------------------------


def test_the_policies_start_at_their_defaults_and_a_change_shows_at_once(
    client, admin, elsewhere
):
    assert policies_now(client, admin) == DEFAULT_POLICIES
    changed = set_policies(client, admin, max_link_seconds=3600)
    assert changed == {**DEFAULT_POLICIES, "max_link_seconds": 3600}
    # Only what is sent changes.
    changed = set_policies(client, admin, links_need_password=True)
    expected = {
        **DEFAULT_POLICIES,
        "max_link_seconds": 3600,
        "links_need_password": True,
    }
    assert changed == expected
    assert policies_now(client, admin) == expected
    seen = elsewhere.get("/admin/policies", headers=bearer(admin)).get_json()
    assert seen == expected
    assert (
        set_policies(client, admin, max_link_seconds=None)["max_link_seconds"] is None
    )


def test_a_bad_policy_is_a_400_and_changes_nothing(client, admin):
    for values, message in [
        ({"max_link_seconds": 5}, "max_link_seconds must be 60 to 315360000"),
        ({"max_link_seconds": "soon"}, "max_link_seconds: Not a valid integer."),
        (
            {"default_quota_bytes": -1},
            "default_quota_bytes must be 0 to 9223372036854775807",
        ),
        ({"share_links": "maybe"}, "share_links: Not a valid boolean."),
        # One bad value spoils the whole change.
        ({"share_links": False, "max_link_seconds": 1}, "max_link_seconds must be"),
    ]:
        answer = client.post("/admin/policies", json=values, headers=bearer(admin))
        assert answer.status_code == 400, values
        assert message in answer.get_json()["message"], answer.get_json()
    for fields, message in [
        ({"max_link_days": "two"}, "max_link_days must be a whole number of days"),
        ({"default_quota": "lots"}, "quota: &#39;lots&#39; is not a size"),
    ]:
        answer = client.post(
            f"/admin/policies?token={admin}",
            data={"share_links": "on", **fields},
            headers=HTML,
        )
        assert answer.status_code == 400 and answer.mimetype == "text/html"
        assert message in answer.get_data(as_text=True)
    assert policies_now(client, admin) == DEFAULT_POLICIES


def checked(page, name: str) -> bool:
    """Whether the page's checkbox ``name`` is ticked."""
    boxes = re.findall(r"<input[^>]*>", page.get_data(as_text=True))
    (box,) = [box for box in boxes if f'name="{name}"' in box]
    return re.search(r"\schecked\b", box) is not None


def test_the_policies_page_sets_every_policy_from_its_form(client, admin):
    page = client.get(f"/admin/policies?token={admin}", headers=HTML)
    assert checked(page, "share_links") and not checked(page, "links_need_password")
    policy_form(
        client,
        admin,
        links_need_password="on",
        upload_requests="on",
        two_factor_required="on",
        max_link_days="2",
        max_file_days="30",
        default_quota="5 MiB",
    )
    assert policies_now(client, admin) == {
        "links_need_password": True,
        "max_link_seconds": 2 * DAY,
        "share_links": False,
        "upload_requests": True,
        "two_factor_required": True,
        "default_quota_bytes": 5 * MIB,
        "max_file_seconds": 30 * DAY,
    }
    page = client.get(f"/admin/policies?token={admin}", headers=HTML)
    assert checked(page, "links_need_password") and not checked(page, "share_links")
    text = page.get_data(as_text=True)
    assert 'value="2"' in text and 'value="5 MiB"' in text and 'value="30"' in text
    assert "Policies saved: they apply now." in text
    # Empty fields: no limit, the server's default quota.
    policy_form(
        client,
        admin,
        share_links="on",
        upload_requests="on",
        max_link_days="",
        default_quota="",
    )
    assert policies_now(client, admin) == DEFAULT_POLICIES


# POST /admin/policies takes an application/x-www-form-urlencoded body of
# PoliciesSchema from an API client ("a change sends only what changes"); only
# a browser's form is read as the page's.
def test_a_form_encoded_change_of_the_api_changes_only_what_it_sends(client, admin):
    answer = client.post(
        "/admin/policies", data={"max_link_seconds": "3600"}, headers=bearer(admin)
    )
    assert answer.status_code == 200
    assert answer.get_json() == {**DEFAULT_POLICIES, "max_link_seconds": 3600}


def test_links_need_a_password_when_the_policy_says_so(client, admin, token):
    file_id = uploaded(client, token, b"report", "report.txt")["id"]
    older = path_of(make_share(client, token, file_id))
    policy_form(
        client, admin, links_need_password="on", share_links="on", upload_requests="on"
    )
    refused = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    assert refused.status_code == 400
    assert refused.get_json() == {"message": LINKS_NEED_PASSWORD}
    page = share_form(client, token, file_id)
    assert page.status_code == 400 and page.mimetype == "text/html"
    assert LINKS_NEED_PASSWORD in page.get_data(as_text=True)
    made = make_share(client, token, file_id, password=SHARE_PASSWORD)
    assert made["has_password"] is True
    assert (
        share_form(client, token, file_id, password=SHARE_PASSWORD).status_code == 303
    )
    opened = client.get(
        path_of(made) + "/download", headers=basic_auth("", SHARE_PASSWORD)
    )
    assert opened.status_code == 200 and opened.data == b"report"
    # The link made before, without a password, stops opening.
    for path in (older, older + "/download"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert answer.get_json() == {"message": LINKS_NEED_PASSWORD}
    set_policies(client, admin, links_need_password=False)
    assert client.get(older + "/download").status_code == 200


def test_a_link_may_not_outlive_the_policy(app, client, admin, token):
    file_id = uploaded(client, token, b"report", "report.txt")["id"]
    old = make_share(client, token, file_id)
    young = make_share(client, token, file_id)
    set_policies(client, admin, max_link_seconds=DAY)
    too_long = client.post(
        f"/files/{file_id}/shares", json={"expires_in": 2 * DAY}, headers=bearer(token)
    )
    assert too_long.status_code == 400
    assert too_long.get_json() == {
        "message": "Links on this server may last at most 1 day"
    }
    page = share_form(client, token, file_id, expires_in=str(2 * DAY))
    assert page.status_code == 400
    assert "Links on this server may last at most 1 day" in page.get_data(as_text=True)
    assert make_share(client, token, file_id, expires_in=DAY)["status"] == "active"
    assert share_form(client, token, file_id, expires_in=str(DAY)).status_code == 303
    # A link made before the policy, and older than it allows, stops opening;
    # a younger one opens until it is that old.
    with app.app_context():
        db.session.execute(
            db.update(Share)
            .where(Share.id == old["id"])
            .values(created_at=utcnow() - timedelta(days=2))
        )
        db.session.commit()
    answer = client.get(path_of(old))
    assert answer.status_code == 403
    assert answer.get_json() == {
        "message": "Links on this server may last at most 1 day"
    }
    assert client.get(path_of(young)).status_code == 200


def test_share_links_off_refuses_new_and_existing_links_on_every_instance(
    client, admin, token, elsewhere
):
    file_id = uploaded(client, token, b"report", "report.txt")["id"]
    link = path_of(make_share(client, token, file_id))
    set_policies(client, admin, share_links=False)
    refused = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    assert refused.status_code == 403 and refused.get_json() == {"message": LINKS_OFF}
    page = share_form(client, token, file_id)
    assert page.status_code == 403 and LINKS_OFF in page.get_data(as_text=True)
    for instance in (client, elsewhere):
        for path in (link, link + "/download"):
            answer = instance.get(path)
            assert answer.status_code == 403, path
            assert answer.get_json() == {"message": LINKS_OFF}
    policy_form(client, admin, share_links="on", upload_requests="on")
    assert elsewhere.get(link + "/download").status_code == 200


def test_upload_requests_off_refuses_new_and_existing_requests(
    app, client, runner, admin, token
):
    link = path_of(make_request(client, token))
    policy_form(client, admin, share_links="on")
    assert policies_now(client, admin)["upload_requests"] is False
    refused = client.post("/requests", json={"title": "More"}, headers=bearer(token))
    assert refused.status_code == 403 and refused.get_json() == {
        "message": REQUESTS_OFF
    }
    page = client.post(
        f"/requests?token={token}",
        data={"title": "More", "note": "", "max_files": "", "max_bytes": ""},
        headers=HTML,
    )
    assert page.status_code == 403 and REQUESTS_OFF in page.get_data(as_text=True)
    refused_by_cli(
        cli(runner, "requests", "create", "alice", "--title", "More"), REQUESTS_OFF
    )
    guest = app.test_client()
    for answer in (guest.get(link), guest_upload(guest, link)):
        assert answer.status_code == 403
        assert answer.get_json() == {"message": REQUESTS_OFF}
    listed = client.get("/requests", headers=bearer(token)).get_json()["items"]
    assert [each["title"] for each in listed] == ["Scans"]
    set_policies(client, admin, upload_requests=True)
    assert guest_upload(guest, link).status_code == 201


# With upload requests turned off ("none takes files", policies.py), a
# guest's upload begun through a request link before takes no more pieces.
def test_a_guests_upload_under_way_stops_when_upload_requests_are_turned_off(
    app, client, admin, token
):
    link = path_of(make_request(client, token))
    created = guest_upload(client, link, b"0123456789")
    assert created.status_code == 201
    upload = created.headers["Location"].removeprefix("http://localhost")
    assert send_piece(client, upload, 0, b"01234").status_code == 204
    set_policies(client, admin, upload_requests=False)
    answer = send_piece(client, upload, 5, b"56789")
    assert answer.status_code == 403
    assert answer.get_json() == {"message": REQUESTS_OFF}


def test_two_factors_required_refuses_an_api_sign_in_without_one(client, auth, admin):
    auth.create_user()
    set_policies(client, admin, two_factor_required=True)
    for answer in (
        auth.login(),
        client.post("/login", json={"username": "alice", "password": PASSWORD}),
    ):
        assert answer.status_code == 401
        assert answer.get_json() == {"message": SET_UP_FIRST}
        assert answer.headers["X-Lockbox-OTP"] == "required; app"
    # The sign-in page sets the second factor up before anything opens.
    page = client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, headers=HTML
    )
    assert page.status_code == 200
    assert "Set up two-factor sign-in" in page.get_data(as_text=True)
    assert client.get_cookie(RENEW_COOKIE, path="/renew") is None
    set_policies(client, admin, two_factor_required=False)
    assert auth.login().status_code == 200


def test_two_factors_required_asks_nothing_of_single_sign_on_accounts(
    app, client, auth, admin
):
    auth.create_user()
    add_user(
        app,
        "carol",
        password_hash=None,
        oidc_issuer="https://id.example.org",
        oidc_subject="carol-1",
    )
    auth.create_user("bob")
    update_user(app, "bob", totp_enabled_at=utcnow())

    def required() -> dict[str, bool]:
        with app.app_context():
            users = db.session.execute(db.select(User)).scalars()
            return {user.username: two_factor.required_of(user) for user in users}

    assert not any(required().values())
    set_policies(client, admin, two_factor_required=True)
    assert required() == {ADMIN: True, "alice": True, "bob": False, "carol": False}


def test_the_default_quota_applies_to_accounts_made_afterwards(
    app, client, runner, admin, token
):
    policy_form(
        client, admin, share_links="on", upload_requests="on", default_quota="3 MiB"
    )
    assert policies_now(client, admin)["default_quota_bytes"] == 3 * MIB
    made = client.post("/admin/users", json={"username": "erin"}, headers=bearer(admin))
    assert made.get_json()["user"]["quota_bytes"] == 3 * MIB
    # A quota given when the account is made wins over the policy.
    given = client.post(
        "/admin/users",
        json={"username": "gus", "quota": "1 GiB"},
        headers=bearer(admin),
    )
    assert given.get_json()["user"]["quota_bytes"] == 1024**3
    result = cli(runner, "users", "create", "frank", input="a long password 1\n")
    assert result.exit_code == 0, result.output
    assert user_row(app, "frank").quota_bytes == 3 * MIB
    listed = accounts(client, admin)
    assert listed["frank"]["quota_bytes"] == 3 * MIB
    # Accounts made before keep theirs.
    assert listed["alice"]["quota_bytes"] is None
    assert listed["alice"]["quota_is_default"] is True


# A default_quota_bytes beyond what a BigInteger holds is refused, so that
# no account made afterwards fails in the database.
def test_a_default_quota_too_large_to_store_breaks_no_account_creation(client, admin):
    answer = client.post(
        "/admin/policies", json={"default_quota_bytes": 2**64}, headers=bearer(admin)
    )
    assert answer.status_code in (200, 400)
    if answer.status_code == 200:
        made = client.post(
            "/admin/users", json={"username": "zed"}, headers=bearer(admin)
        )
        assert made.status_code == 201


# --- everything shared ---------------------------------------------------------


def add_webhook(client, token) -> dict:
    answer = client.post(
        "/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["link.downloaded"]},
        headers=bearer(token),
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def shared(client, admin) -> dict:
    answer = client.get("/admin/shared", headers=bearer(admin))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_everything_shared_lists_every_users_links_requests_tokens_and_webhooks(
    client, auth, admin, token
):
    file_id = uploaded(client, token, b"report", "report.pdf")["id"]
    make_share(client, token, file_id)
    make_request(client, token, title="Scans")
    pat = make_pat(client, token, ["files:read"], name="backup")
    hook = add_webhook(client, token)
    auth.create_user("bob")
    bob = auth.token("bob")
    bobs = uploaded(client, bob, b"bob", "bob.txt")["id"]
    make_share(client, bob, bobs, password=SHARE_PASSWORD)
    answer = client.get("/admin/shared", headers=bearer(admin))
    everything = answer.get_json()
    # Newest first, each with its owner's name.
    assert [
        (each["owner"], each["title"], each["has_password"], each["status"])
        for each in everything["links"]
    ] == [("bob", "bob.txt", True, "active"), ("alice", "report.pdf", False, "active")]
    assert [
        (each["owner"], each["title"], each["status"], each["count"])
        for each in everything["requests"]
    ] == [("alice", "Scans", "active", 0)]
    (listed_token,) = everything["tokens"]
    assert listed_token["owner"] == "alice" and listed_token["name"] == "backup"
    assert listed_token["prefix"] == pat["prefix"]
    assert listed_token["scopes"] == ["files:read"]
    (listed_hook,) = everything["webhooks"]
    assert listed_hook["owner"] == "alice" and listed_hook["enabled"] is True
    # Scheme and host only: a receiver's key may be in its path or query.
    assert listed_hook["url"] == "http://127.0.0.1:9/…"
    # No secret is shown: neither the token nor the webhook's.
    text = answer.get_data(as_text=True)
    assert pat["token"] not in text and hook["secret"] not in text
    page = client.get(f"/admin/shared?token={admin}", headers=HTML)
    assert page.status_code == 200
    assert all(
        name in page.get_data(as_text=True)
        for name in ("report.pdf", "Scans", "backup")
    )


def test_an_admin_revokes_another_users_link(client, admin, token):
    file_id = uploaded(client, token, b"report", "report.pdf")["id"]
    share = make_share(client, token, file_id)
    answer = client.post(f"/admin/links/{share['id']}/revoke", headers=bearer(admin))
    assert answer.status_code == 204
    gone = client.get(path_of(share) + "/download")
    assert gone.status_code == 410
    assert gone.get_json() == {"message": "This link was revoked by its owner"}
    assert shared(client, admin)["links"][0]["status"] == "revoked"
    again = client.post(
        f"/admin/links/{share['id']}/revoke?token={admin}", headers=HTML
    )
    assert again.status_code == 303
    assert urlsplit(again.headers["Location"]).path == "/admin/shared"


def test_an_admin_closes_another_users_request(client, admin, token):
    made = make_request(client, token)
    answer = client.post(f"/admin/requests/{made['id']}/close", headers=bearer(admin))
    assert answer.status_code == 204
    gone = client.get(path_of(made))
    assert gone.status_code == 410
    assert gone.get_json() == {"message": "This upload request was closed by its owner"}
    listed = client.get("/requests", headers=bearer(token)).get_json()["items"]
    assert listed[0]["status"] == "closed"
    assert shared(client, admin)["requests"][0]["status"] == "closed"


def test_an_admin_revokes_another_users_token(client, admin, token):
    pat = make_pat(client, token, ["files:read"])
    assert client.get("/files", headers=bearer(pat["token"])).status_code == 200
    answer = client.post(f"/admin/tokens/{pat['id']}/revoke", headers=bearer(admin))
    assert answer.status_code == 204
    assert client.get("/files", headers=bearer(pat["token"])).status_code == 401
    assert client.get("/tokens", headers=bearer(token)).get_json()["items"] == []
    assert shared(client, admin)["tokens"] == []


def test_an_admin_disables_another_users_webhook(client, admin, token):
    hook = add_webhook(client, token)
    answer = client.post(f"/admin/webhooks/{hook['id']}/disable", headers=bearer(admin))
    assert answer.status_code == 204
    assert shared(client, admin)["webhooks"][0]["enabled"] is False
    owners = client.get("/webhooks", headers=bearer(token)).get_json()["items"]
    assert owners[0]["enabled"] is False


def test_unknown_rows_and_users_are_404(client, admin):
    for number in (999_999, 0, 2**40):
        for path, message in [
            (f"/admin/links/{number}/revoke", "No such link"),
            (f"/admin/requests/{number}/close", "No such upload request"),
            (f"/admin/tokens/{number}/revoke", "No such token"),
            (f"/admin/webhooks/{number}/disable", "No such webhook"),
            (f"/admin/users/{number}/disable", "No such user"),
            (f"/admin/users/{number}/enable", "No such user"),
            (f"/admin/users/{number}/delete", "No such user"),
            (f"/admin/users/{number}/sign-out", "No such user"),
            (f"/admin/users/{number}/reset-password", "No such user"),
        ]:
            answer = client.post(path, headers=bearer(admin))
            assert answer.status_code == 404, path
            assert answer.get_json() == {"message": message}
        for path, body in [
            (f"/admin/users/{number}/role", {"role": "user"}),
            (f"/admin/users/{number}/quota", {"quota": "1 MiB"}),
        ]:
            answer = client.post(path, json=body, headers=bearer(admin))
            assert answer.status_code == 404 and answer.get_json() == {
                "message": "No such user"
            }
        answer = client.get(f"/admin/users/{number}", headers=bearer(admin))
        assert answer.status_code == 404


def test_what_an_admin_does_is_in_the_audit_log(app, client, admin, token):
    disable(client, admin, app)
    enable(client, admin, app)
    set_policies(client, admin, share_links=False)
    answer = client.get("/admin/audit?event=user", headers=bearer(admin))
    rows = answer.get_json()["items"]
    alice = user_id(app)
    assert [(row["event"], row["actor"], row["target"]) for row in rows[:2]] == [
        ("user.enabled", ADMIN, f"user {alice} alice"),
        ("user.disabled", ADMIN, f"user {alice} alice"),
    ]
    policy = client.get("/admin/audit?event=policy", headers=bearer(admin))
    (changed,) = policy.get_json()["items"]
    assert changed["event"] == "policy.changed" and changed["target"] == "share_links"
    assert cli(app.test_cli_runner(), "audit", "verify").exit_code == 0


# --- the API description --------------------------------------------------------


# Statuses the admin area's rules add to other routes are in /openapi.json:
# GET /login answers 403 for a disabled account; GET /s/<link>,
# /s/<link>/download and /r/<link> 403 while a policy stops a link or the
# owner's account is disabled.
@pytest.mark.one_database
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/login", 403),
        ("get", "/s/{link}", 403),
        ("get", "/s/{link}/download", 403),
        ("get", "/r/{link}", 403),
    ],
)
def test_every_status_answered_is_in_the_api_description(client, method, path, status):
    document = client.get("/openapi.json").get_json()
    assert str(status) in document["paths"][path][method]["responses"]


# --- what an attack review found ---------------------------------------------


def test_two_admins_taking_each_other_away_at_once_leave_one(
    app, client, auth, runner, elsewhere
):
    """x disables y through one instance while y disables x through another,
    at the same moment, a few times over: never no administrator left (on
    MariaDB the last-administrator check is a locking read, which sees the
    other's commit; a plain one read its snapshot)."""
    for round_ in range(3):
        names = (f"x{round_}", f"y{round_}")
        for name in names:
            auth.create_user(name)
            make_admin(runner, name)
        # Only these two are enabled administrators this round.
        with app.app_context():
            for user in db.session.execute(db.select(User)).scalars():
                if user.username not in names:
                    user.role = "user"
            db.session.commit()
        tokens = [auth.token(name) for name in names]
        ids = [user_id(app, name) for name in names]
        start = threading.Barrier(2)
        answers = []

        def take_away(via, token, other, start=start, answers=answers):
            start.wait()
            answers.append(
                via.post(f"/admin/users/{other}/disable", headers=bearer(token))
            )

        threads = [
            threading.Thread(target=take_away, args=(client, tokens[0], ids[1])),
            threading.Thread(target=take_away, args=(elsewhere, tokens[1], ids[0])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answer.status_code for answer in answers) in (
            [200, 401],  # one disabled the other first: its token then failed
            [200, 409],  # or its check saw the other's change
            [200, 403],
        ), [(answer.status_code, answer.get_json()) for answer in answers]
        with app.app_context():
            admins = db.session.execute(
                db.select(User.username).where(
                    User.role == "admin", User.disabled_at.is_(None)
                )
            ).all()
        assert len(admins) >= 1
        # Next round: nobody from this one is an administrator any more.
        with app.app_context():
            for name in names:
                user = db.session.execute(
                    db.select(User).filter_by(username=name)
                ).scalar_one()
                user.disabled_at, user.role = None, "user"
            db.session.commit()


def test_an_admin_token_neither_sends_password_links_nor_makes_admins(
    app, client, runner, admin, token
):
    """What would hand an account to whoever holds a copied token needs a
    signed-in session: a password link, a role, a new administrator."""
    auth_admin = make_pat(client, admin, ["admin"])["token"]
    alice = user_id(app)
    for path, body in [
        (f"/admin/users/{alice}/reset-password", None),
        (f"/admin/users/{alice}/role", {"role": "admin"}),
        ("/admin/users", {"username": "mallory", "role": "admin"}),
    ]:
        answer = client.post(path, json=body, headers=bearer(auth_admin))
        assert answer.status_code == 403, path
        assert "needs a signed-in session" in answer.get_json()["message"]
    # A user, though, it may make.
    made = client.post(
        "/admin/users", json={"username": "erin"}, headers=bearer(auth_admin)
    )
    assert made.status_code == 201


def test_an_admin_sends_no_password_link_for_their_own_account(app, client, admin):
    answer = client.post(
        f"/admin/users/{user_id(app, ADMIN)}/reset-password", headers=bearer(admin)
    )
    assert answer.status_code == 409


def test_a_password_of_spaces_is_no_password_under_the_policy(client, admin, token):
    set_policies(client, admin, links_need_password=True)
    file_id = uploaded(client, token)["id"]
    answer = client.post(
        f"/files/{file_id}/shares", json={"password": " " * 8}, headers=bearer(token)
    )
    assert answer.status_code == 400
    assert answer.get_json() == {"message": LINKS_NEED_PASSWORD}


def test_a_disabled_accounts_events_are_told_nowhere(app, client, admin, token):
    """Its link expiring unused while it is disabled: no webhook delivery,
    no e-mail (the owner is not told through anything while disabled)."""
    hook = client.post(
        "/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["link.expired_unused"]},
        headers=bearer(token),
    )
    assert hook.status_code == 201
    file_id = uploaded(client, token)["id"]
    make_share(client, token, file_id)
    disable(client, admin, app)
    with app.app_context():
        for share in db.session.execute(db.select(Share)).scalars():
            share.expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
        notifications.notice_expired()
        assert db.session.execute(db.select(Delivery)).first() is None
