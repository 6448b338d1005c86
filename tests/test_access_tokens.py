"""Personal access tokens: made by a signed-in session, scoped, shown once,
stored as a hash, and ended by revocation, expiry, signing out everywhere, a
new password or the account's deletion."""

import re
import time
import zlib
from datetime import datetime, timedelta

import pytest

from helpers import (
    bearer,
    tus_headers,
    uploaded,
)
from models import AccessToken, db, utcnow
from personal_tokens import BASE62, access_token_hash

HTML = {"Accept": "text/html"}
ALL_SCOPES = ["files:read", "files:write", "shares:write"]


def make_pat(client, session, scopes=ALL_SCOPES, **settings):
    """POST /tokens that must succeed; the answer's JSON."""
    response = client.post(
        "/tokens",
        json={"name": "ci", "scopes": scopes, **settings},
        headers=bearer(session),
    )
    assert response.status_code == 201, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def test_a_new_token_is_shown_once_with_what_it_may_do(client, token):
    before = utcnow()
    made = make_pat(client, token, ["files:write", "files:read"])
    assert set(made) == {
        "id",
        "name",
        "scopes",
        "prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "token",
    }
    assert made["name"] == "ci" and made["scopes"] == ["files:read", "files:write"]
    assert made["token"].startswith(made["prefix"]) and made["prefix"].startswith(
        "lbx_"
    )
    expires_at = datetime.fromisoformat(made["expires_at"])
    assert before + timedelta(days=90) <= expires_at <= utcnow() + timedelta(days=90)
    listed = client.get("/tokens", headers=bearer(token)).get_json()["items"]
    assert [item["id"] for item in listed] == [made["id"]]
    assert "token" not in listed[0] and made["token"] not in str(listed)


def test_the_token_format_is_recognisable_and_self_checking(client, token):
    value = make_pat(client, token)["token"]
    match = re.fullmatch(r"lbx_([0-9A-Za-z]{40})([0-9A-Za-z]{6})", value)
    assert match is not None
    checksum, number = match[2], zlib.crc32(match[1].encode())
    expected = ""
    for _ in range(6):
        number, digit = divmod(number, 62)
        expected = BASE62[digit] + expected
    assert checksum == expected
    # One character changed breaks the checksum: refused without a lookup.
    broken = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert client.get("/files", headers=bearer(broken)).status_code == 401


def test_only_a_hash_of_the_token_is_stored(app, client, token):
    value = make_pat(client, token)["token"]
    with app.app_context():
        row = db.session.execute(db.select(AccessToken)).scalar_one()
        stored = [str(getattr(row, column.key)) for column in AccessToken.__table__.c]
    assert row.token_hash == access_token_hash(value)
    assert not any(value in field or value[4:] in field for field in stored)


def test_a_token_works_as_bearer_and_in_the_query(client, token):
    value = make_pat(client, token)["token"]
    file_id = uploaded(client, value, b"from a script", "ci.txt")["id"]
    assert client.get("/files", headers=bearer(value)).status_code == 200
    download = client.get(f"/files/{file_id}/download?token={value}")
    assert download.status_code == 200 and download.get_data() == b"from a script"
    assert client.get(f"/account?token={value}").status_code == 200


@pytest.mark.parametrize(
    ("scopes", "method", "path", "needed"),
    [
        (["files:read"], "post", "/upload", "files:write"),
        (["files:read"], "delete", "/files/{id}", "files:write"),
        (["files:read"], "post", "/files/{id}/shares", "shares:write"),
        (["files:write"], "get", "/files", "files:read"),
        (["files:write"], "get", "/files/{id}/download", "files:read"),
        (["shares:write"], "get", "/account", "files:read"),
        (["files:read"], "post", "/uploads", "files:write"),
    ],
)
def test_a_token_outside_its_scope_is_a_403(
    client, token, scopes, method, path, needed
):
    file_id = uploaded(client, token)["id"]
    value = make_pat(client, token, scopes)["token"]
    headers = tus_headers(value, **{"Upload-Length": "5"}) if "uploads" in path else {}
    response = getattr(client, method)(
        path.format(id=file_id), headers=bearer(value, **headers)
    )
    assert response.status_code == 403
    assert response.get_json() == {"message": f"Token lacks the {needed} scope"}


def test_each_scope_opens_what_it_names(client, token):
    file_id = uploaded(client, token)["id"]
    reader = make_pat(client, token, ["files:read"])["token"]
    writer = make_pat(client, token, ["files:write"])["token"]
    # Making a link reads the file too; revoking one needs shares:write alone.
    sharer = make_pat(client, token, ["files:read", "shares:write"])["token"]
    revoker = make_pat(client, token, ["shares:write"])["token"]
    assert client.get(f"/files/{file_id}", headers=bearer(reader)).status_code == 200
    assert uploaded(client, writer, b"new", "new.txt")["filename"] == "new.txt"
    share = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(sharer))
    assert share.status_code == 201
    revoke = client.delete(f"/shares/{share.get_json()['id']}", headers=bearer(revoker))
    assert revoke.status_code == 204
    assert client.delete(f"/files/{file_id}", headers=bearer(writer)).status_code == 204


def test_making_a_link_needs_read_access_to_the_file_too(client, token):
    """A token that may only make links cannot read a file through a link of
    its own making, nor tell an existing file from a missing one."""
    file_id = uploaded(client, token)["id"]
    sharer = make_pat(client, token, ["shares:write"])["token"]
    existing = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(sharer))
    missing = client.post(
        f"/files/{file_id + 1000}/shares", json={}, headers=bearer(sharer)
    )
    assert existing.status_code == missing.status_code == 403
    assert existing.get_json() == missing.get_json()
    assert existing.get_json() == {"message": "Token lacks the files:read scope"}
    listed = client.get(f"/files/{file_id}/shares", headers=bearer(token)).get_json()
    assert listed["items"] == []
    both = make_pat(client, token, ["files:read", "shares:write"])["token"]
    made = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(both))
    assert made.status_code == 201


def test_listing_links_needs_the_scope_that_makes_them(client, token):
    """A files:read token cannot collect working links that outlive it."""
    file_id = uploaded(client, token)["id"]
    client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    reader = make_pat(client, token, ["files:read"])["token"]
    response = client.get(f"/files/{file_id}/shares", headers=bearer(reader))
    assert response.status_code == 403
    assert response.get_json() == {"message": "Token lacks the shares:write scope"}
    assert "/s/" not in response.get_data(as_text=True)
    sharer = make_pat(client, token, ["files:read", "shares:write"])["token"]
    listed = client.get(f"/files/{file_id}/shares", headers=bearer(sharer))
    assert listed.status_code == 200 and len(listed.get_json()["items"]) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/tokens"),
        ("get", "/tokens"),
        ("delete", "/tokens/1"),
        ("post", "/logout"),
        ("post", "/logout?everywhere=1"),
    ],
)
def test_a_token_cannot_do_what_needs_a_session(client, token, method, path):
    value = make_pat(client, token)["token"]
    body = (
        {"json": {"name": "more", "scopes": ["files:read"]}} if method == "post" else {}
    )
    response = getattr(client, method)(path, headers=bearer(value), **body)
    assert response.status_code == 403
    assert response.get_json() == {
        "message": "This needs a signed-in session, not an API token"
    }
    with client.application.app_context():
        assert (
            db.session.execute(db.select(db.func.count(AccessToken.id))).scalar() == 1
        )


def test_a_token_is_not_a_refresh_token(client, token):
    value = make_pat(client, token)["token"]
    response = client.post("/refresh", headers=bearer(value))
    assert response.status_code == 401 and response.get_json() == {
        "message": "Invalid token"
    }


def test_an_expired_token_is_a_401(app, client, token):
    value = make_pat(client, token)["token"]
    with app.app_context():
        db.session.execute(
            db.update(AccessToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    response = client.get("/files", headers=bearer(value))
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token expired"}


def test_a_revoked_token_is_a_401_at_once(client, token):
    made = make_pat(client, token)
    assert (
        client.delete(f"/tokens/{made['id']}", headers=bearer(token)).status_code == 204
    )
    response = client.get("/files", headers=bearer(made["token"]))
    assert response.status_code == 401
    assert client.get("/tokens", headers=bearer(token)).get_json() == {"items": []}
    assert (
        client.delete(f"/tokens/{made['id']}", headers=bearer(token)).status_code == 404
    )


def test_signing_out_everywhere_ends_every_token(client, token):
    values = [make_pat(client, token)["token"] for _ in range(2)]
    assert client.post("/logout?everywhere=1", headers=bearer(token)).status_code == 204
    for value in values:
        assert client.get("/files", headers=bearer(value)).status_code == 401


def test_a_new_password_ends_every_token(client, runner, token):
    value = make_pat(client, token)["token"]
    result = runner.invoke(
        args=["users", "set-password", "alice"], input="a new password 77\n"
    )
    assert result.exit_code == 0, result.output
    assert client.get("/files", headers=bearer(value)).status_code == 401


def test_tokens_of_a_deleted_user_are_gone_with_them(app, client, auth, runner, token):
    value = make_pat(client, token)["token"]
    result = runner.invoke(args=["users", "delete", "alice", "--yes"])
    assert result.exit_code == 0, result.output
    assert client.get("/files", headers=bearer(value)).status_code == 401
    with app.app_context():
        assert (
            db.session.execute(db.select(db.func.count(AccessToken.id))).scalar() == 0
        )
    # A new alice does not inherit them.
    auth.create_user("alice")
    assert client.get("/files", headers=bearer(value)).status_code == 401


def test_other_users_tokens_cannot_be_revoked(client, auth, token):
    made = make_pat(client, token)
    auth.create_user("bob")
    bob = auth.token("bob")
    assert (
        client.delete(f"/tokens/{made['id']}", headers=bearer(bob)).status_code == 404
    )
    assert client.get("/files", headers=bearer(made["token"])).status_code == 200


def test_last_use_is_written_down_at_most_once_a_minute(app, client, token):
    made = make_pat(client, token)
    assert made["last_used_at"] is None
    client.get("/files", headers=bearer(made["token"]))
    first = client.get("/tokens", headers=bearer(token)).get_json()["items"][0]
    assert first["last_used_at"] is not None
    client.get("/files", headers=bearer(made["token"]))
    again = client.get("/tokens", headers=bearer(token)).get_json()["items"][0]
    assert again["last_used_at"] == first["last_used_at"]
    with app.app_context():
        db.session.execute(
            db.update(AccessToken).values(last_used_at=utcnow() - timedelta(minutes=2))
        )
        db.session.commit()
    client.get("/files", headers=bearer(made["token"]))
    later = client.get("/tokens", headers=bearer(token)).get_json()["items"][0]
    assert later["last_used_at"] > first["last_used_at"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scopes": ["files:read"]}, "name: Missing data for required field."),
        (
            {"name": "  ", "scopes": ["files:read"]},
            "name: name must be 1 to 80 characters",
        ),
        (
            {"name": "x" * 81, "scopes": ["files:read"]},
            "name: name must be 1 to 80 characters",
        ),
        ({"name": "ci"}, "scopes: Missing data for required field."),
        ({"name": "ci", "scopes": []}, "scopes: give at least one scope"),
        ({"name": "ci", "scopes": ["root"]}, "scopes: unknown scope root"),
        ({"name": "ci", "scopes": "files:read"}, "scopes: Not a valid list."),
        (
            {"name": "ci", "scopes": ["files:read"], "expires_in": 366 * 86400},
            "expires_in: expires_in must be from 60 to 31536000",
        ),
        (
            {"name": "ci", "scopes": ["files:read"], "expires_in": None},
            "expires_in: null (no expiry) is not allowed on this server",
        ),
    ],
)
def test_bad_token_requests_are_a_400_that_says_why(client, token, body, message):
    response = client.post("/tokens", json=body, headers=bearer(token))
    assert response.status_code == 400
    got = response.get_json()["message"]
    assert got == message or got.endswith(message.split(": ", 1)[1]), got


@pytest.mark.parametrize("app_settings", [{"PAT_ALLOW_NO_EXPIRY": True}])
def test_no_expiry_only_where_the_server_allows_it(client, token):
    made = make_pat(client, token, expires_in=None)
    assert made["expires_at"] is None
    assert client.get("/files", headers=bearer(made["token"])).status_code == 200


def test_the_tokens_page_makes_shows_once_and_revokes(client, token):
    index = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert f"/tokens?token={token}" in index
    page = client.get(f"/tokens?token={token}", headers=HTML)
    assert page.status_code == 200 and "No tokens yet" in page.get_data(as_text=True)
    made = client.post(
        f"/tokens?token={token}",
        data={
            "name": "backup",
            "scopes": ["files:read", "files:write"],
            "expires_in": "604800",
        },
        headers=HTML,
    )
    # Post/redirect/get: the answer is a redirect to the page that shows it.
    assert made.status_code == 303
    assert made.headers["Location"] == f"/tokens?token={token}"
    # The browser carries it there sealed: the token is nowhere in the clear.
    cookie = made.headers["Set-Cookie"]
    assert cookie.startswith("lockbox_new_token=") and "lbx_" not in cookie
    assert "HttpOnly" in cookie and "Path=/tokens" in cookie and "Max-Age=120" in cookie
    shown = client.get(made.headers["Location"], headers=HTML)
    text = shown.get_data(as_text=True)
    value = re.search(r'value="(lbx_[0-9A-Za-z]{46})"', text)[1]
    assert "shown this once" in text and shown.headers["Cache-Control"] == "no-store"
    assert client.get("/files", headers=bearer(value)).status_code == 200
    # A reload makes no second token, and no longer shows this one.
    again = client.get(f"/tokens?token={token}", headers=HTML).get_data(as_text=True)
    assert value not in again and value[:12] in again and "backup" in again
    assert len(client.get("/tokens", headers=bearer(token)).get_json()["items"]) == 1
    listed = client.get("/tokens", headers=bearer(token)).get_json()["items"]
    revoked = client.post(
        f"/tokens/{listed[0]['id']}/revoke?token={token}", headers=HTML
    )
    assert revoked.status_code == 303
    assert client.get("/files", headers=bearer(value)).status_code == 401


def test_a_sealed_new_token_shows_only_to_its_owner_and_only_fresh(
    app, client, auth, token, monkeypatch
):
    made = client.post(
        f"/tokens?token={token}",
        data={"name": "backup", "scopes": "files:read"},
        headers=HTML,
    )
    sealed = made.headers["Set-Cookie"].split(";")[0].partition("=")[2]
    # Bob, handed alice's sealed cookie, sees nothing.
    auth.create_user("bob")
    bob = app.test_client()
    bob.set_cookie("lockbox_new_token", sealed, path="/tokens")
    page = bob.get(f"/tokens?token={auth.token('bob')}", headers=HTML)
    assert 'id="new-token"' not in page.get_data(as_text=True)
    # Nor does alice once the seal is older than two minutes, nor a forged one.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 121)
    late = app.test_client()
    late.set_cookie("lockbox_new_token", sealed, path="/tokens")
    page = late.get(f"/tokens?token={token}", headers=HTML)
    assert 'id="new-token"' not in page.get_data(as_text=True)
    monkeypatch.setattr(time, "time", real_time)
    forged = app.test_client()
    forged.set_cookie("lockbox_new_token", sealed[:-4] + "AAAA", path="/tokens")
    page = forged.get(f"/tokens?token={token}", headers=HTML)
    assert page.status_code == 200
    assert 'id="new-token"' not in page.get_data(as_text=True)
    # Alice's own, in time, shows.
    fresh = app.test_client()
    fresh.set_cookie("lockbox_new_token", sealed, path="/tokens")
    page = fresh.get(f"/tokens?token={token}", headers=HTML)
    assert 'id="new-token"' in page.get_data(as_text=True)


def test_a_bad_form_on_the_tokens_page_is_a_readable_400(client, token):
    answer = client.post(f"/tokens?token={token}", data={"name": "x"}, headers=HTML)
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert "give at least one scope" in answer.get_data(as_text=True)


def test_the_cli_makes_lists_and_revokes_tokens(client, runner, token):
    result = runner.invoke(
        args=[
            "tokens",
            "create",
            "alice",
            "--name",
            "ci",
            "--scopes",
            "files:write",
            "--expires-in",
            "30d",
        ]
    )
    assert result.exit_code == 0, result.output
    value = result.stdout.strip()
    assert re.fullmatch(r"lbx_[0-9A-Za-z]{46}", value)
    assert "not shown again" in result.stderr
    assert uploaded(client, value, b"ci", "ci.txt")["filename"] == "ci.txt"
    assert client.get("/files", headers=bearer(value)).status_code == 403
    made = client.get("/tokens", headers=bearer(token)).get_json()["items"][0]
    expires_at = datetime.fromisoformat(made["expires_at"])
    assert abs(expires_at - utcnow() - timedelta(days=30)) < timedelta(minutes=1)
    listing = runner.invoke(args=["tokens", "list", "alice"])
    assert f"{made['id']}\tci\t{value[:12]}...\tfiles:write" in listing.output
    assert value not in listing.output
    revoked = runner.invoke(args=["tokens", "revoke", "alice", str(made["id"])])
    assert revoked.exit_code == 0 and "Revoked token" in revoked.output
    assert client.get("/account", headers=bearer(value)).status_code == 401
    assert runner.invoke(args=["tokens", "list", "alice"]).output == "No tokens.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scopes", "files:read,root"], "not root"),
        (["--scopes", "files:read", "--expires-in", "soon"], "is not a duration"),
        (["--scopes", "files:read", "--expires-in", "400d"], "1 minute to 365 days"),
        (["--scopes", "files:read", "--expires-in", "never"], "not allowed on this"),
    ],
)
def test_the_cli_refuses_bad_tokens_clearly(runner, token, args, message):
    result = runner.invoke(args=["tokens", "create", "alice", "--name", "x", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_cli_revoke_of_an_unknown_token_says_so(runner, token):
    result = runner.invoke(args=["tokens", "revoke", "alice", "42"])
    assert result.exit_code == 1 and "alice has no token 42" in result.output
