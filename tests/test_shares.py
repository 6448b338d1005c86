"""Share links: made, listed and revoked by the owner; opened by anyone with
the link, with its password, expiry and download limit honoured."""

import base64
import hashlib
import time
from datetime import datetime, timedelta

import pytest
from itsdangerous import Signer

import formats
import share_links
from helpers import (
    PASSWORD,
    SECRET_KEY,
    basic_auth,
    bearer,
    make_app,
    random_bytes,
    uploaded,
)
from models import FileChunk, Share, ShareDownload, StoredFile, db, utcnow

HTML = {"Accept": "text/html"}
SHARE_PASSWORD = "open sesame 42"


@pytest.fixture
def shared_file(client, token):
    """Alice's file, 3000 bytes."""
    content = random_bytes(3000, seed=5)
    body = uploaded(
        client, token, content, "report.pdf", after=[("description", "Q3 figures")]
    )
    return body["id"], content


def make_share(client, token, file_id, **settings):
    """POST /files/<id>/shares that must succeed; the answer's JSON."""
    response = client.post(
        f"/files/{file_id}/shares", json=settings, headers=bearer(token)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def link_path(share: dict) -> str:
    """The link's path (the client talks to the app directly)."""
    return share["url"].removeprefix("http://localhost")


def share_id_of(app, path: str) -> int:
    """The id of the share whose link ``path`` (or its download path) is."""
    token = path.removeprefix("/s/").split("/")[0]
    signer = Signer(SECRET_KEY, salt="lockbox.share", digest_method=hashlib.sha256)
    public_id = signer.unsign(token).decode()
    with app.app_context():
        return db.session.execute(
            db.select(Share.id).filter_by(public_id=public_id)
        ).scalar_one()


def share_row(app, share_id) -> Share:
    """The share's row as stored now."""
    with app.app_context():
        return db.session.get(Share, share_id)


def test_making_a_link_answers_what_the_owner_needs(client, token, shared_file):
    file_id, _ = shared_file
    before = utcnow()
    share = make_share(client, token, file_id)
    assert set(share) == {
        "id",
        "file_id",
        "file_ids",
        "url",
        "status",
        "created_at",
        "expires_at",
        "max_downloads",
        "downloads",
        "last_download_at",
        "has_password",
    }
    assert share["url"].startswith("http://localhost/s/")
    assert len(link_path(share)) <= 100
    assert share["status"] == "active" and share["downloads"] == 0
    assert share["has_password"] is False and share["max_downloads"] is None
    # Seven days by default.
    expires_at = datetime.fromisoformat(share["expires_at"])
    assert before + timedelta(days=7) <= expires_at <= utcnow() + timedelta(days=7)


def test_the_link_opens_the_file_without_an_account(client, token, shared_file):
    file_id, content = shared_file
    share = make_share(client, token, file_id)
    page = client.get(link_path(share), headers=HTML)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "report.pdf" in text and "Q3 figures" in text and "alice" in text
    assert "2.9 KiB" in text
    assert page.headers["Cache-Control"] == "no-store"
    assert "noindex" in page.headers["X-Robots-Tag"]
    download = client.get(link_path(share) + "/download")
    assert download.status_code == 200
    assert download.get_data() == content
    assert (
        download.headers["Content-Disposition"] == 'attachment; filename="report.pdf"'
    )
    assert download.headers["Content-Security-Policy"] == "sandbox"


def test_a_link_opens_its_own_file_and_nothing_else(client, auth, token, shared_file):
    file_id, _ = shared_file
    other = uploaded(client, token, b"private", "private.txt")["id"]
    share = make_share(client, token, file_id)
    token_part = link_path(share).removeprefix("/s/")
    # Not an account credential: no listing, no other file.
    assert client.get(f"/files?token={token_part}").status_code == 401
    assert client.get("/files", headers=bearer(token_part)).status_code == 401
    assert client.get(f"/files/{other}/download?token={token_part}").status_code == 401
    page = client.get(link_path(share), headers=HTML).get_data(as_text=True)
    assert "private.txt" not in page


def test_account_tokens_never_open_a_share_url(client, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    # The owner's own token, anywhere on a made-up link: still 404.
    assert client.get(f"/s/{token}", headers=bearer(token)).status_code == 404
    assert client.get(f"/s/{token}/download").status_code == 404
    forged = link_path(share).rsplit(".", 1)[0] + "." + "A" * 43
    assert client.get(forged + "/download", headers=bearer(token)).status_code == 404


def test_unknown_and_tampered_links_get_the_same_404(app, client, token, shared_file):
    file_id, _ = shared_file
    path = link_path(make_share(client, token, file_id))
    public_id, signature = path.removeprefix("/s/").split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    cases = [
        f"/s/{public_id}.{flipped}",  # tampered signature
        f"/s/{public_id}",  # no signature
        "/s/nosuchlinknosuchlink.nope",
        f"/s/{'x' * 16}.{signature}",  # another id, this signature
    ]
    answers = {client.get(case + "/download").get_json()["message"] for case in cases}
    assert answers == {"Link not found"}
    assert {client.get(case).status_code for case in cases} == {404}
    # A real link whose row is gone answers exactly the same.
    with app.app_context():
        db.session.execute(db.delete(Share))
        db.session.commit()
    gone = client.get(path + "/download")
    assert gone.status_code == 404 and gone.get_json() == {"message": "Link not found"}


def test_a_copy_of_the_database_yields_no_working_link(app, client, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    with app.app_context():
        public_id = db.session.get(Share, share["id"]).public_id
    # All the database has: the public id. Signed with any other key, it is 404.
    assert client.get(f"/s/{public_id}/download").status_code == 404
    wrong = Signer(
        "not the app key " * 4, salt="lockbox.share", digest_method=hashlib.sha256
    )
    guess = wrong.sign(public_id).decode()
    assert client.get(f"/s/{guess}/download").status_code == 404
    assert client.get(link_path(share) + "/download").status_code == 200


def test_links_survive_a_key_rotation_with_the_old_key_as_fallback(
    database_url, client, token, shared_file
):
    file_id, content = shared_file
    share = make_share(client, token, file_id)
    rotated = make_app(
        database_url,
        SECRET_KEY="a-brand-new-signing-key-0123456789-abcdefghijklmnopqrstuvwx",
        SECRET_KEY_FALLBACKS=[SECRET_KEY],
    )
    answer = rotated.test_client().get(link_path(share) + "/download")
    assert answer.status_code == 200 and answer.get_data() == content


def test_range_conditional_and_head_work_on_a_link(client, token, shared_file):
    file_id, content = shared_file
    path = link_path(make_share(client, token, file_id)) + "/download"
    head = client.head(path)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(content))
    etag = head.headers["ETag"]
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    part = client.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.get_data() == content[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(content)}"
    bad = client.get(path, headers={"Range": f"bytes={len(content) + 5}-"})
    assert bad.status_code == 416


def test_a_password_link_asks_for_basic_credentials(client, token, shared_file):
    file_id, content = shared_file
    share = make_share(client, token, file_id, password=SHARE_PASSWORD)
    assert share["has_password"] is True
    path = link_path(share) + "/download"
    locked = client.get(path)
    assert locked.status_code == 401
    assert locked.headers["WWW-Authenticate"] == 'Basic realm="Share"'
    assert locked.get_json() == {"message": "This link needs its password"}
    wrong = client.get(path, headers=basic_auth("", "not the password"))
    assert wrong.status_code == 401
    assert wrong.get_json() == {"message": "Wrong password for this link"}
    # Any username: curl -u :password.
    for username in ("", "anyone"):
        right = client.get(path, headers=basic_auth(username, SHARE_PASSWORD))
        assert right.status_code == 200 and right.get_data() == content


def test_the_share_page_asks_for_the_password_in_a_form(client, token, shared_file):
    file_id, content = shared_file
    share = make_share(client, token, file_id, password=SHARE_PASSWORD)
    path = link_path(share)
    page = client.get(path, headers=HTML)
    assert page.status_code == 401
    text = page.get_data(as_text=True)
    assert 'type="password"' in text and "/download" not in text
    wrong = client.post(path, data={"password": "wrong one!"}, headers=HTML)
    assert wrong.status_code == 401
    assert "Wrong password" in wrong.get_data(as_text=True)
    right = client.post(path, data={"password": SHARE_PASSWORD}, headers=HTML)
    assert right.status_code == 303
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert f"Path={path}" in cookie
    unlocked = client.get(path, headers=HTML)
    assert unlocked.status_code == 200
    assert "/download" in unlocked.get_data(as_text=True)
    assert client.get(path + "/download").get_data() == content


def test_the_unlock_cookie_of_one_link_opens_no_other(client, token, shared_file):
    file_id, _ = shared_file
    first = link_path(make_share(client, token, file_id, password=SHARE_PASSWORD))
    second = link_path(make_share(client, token, file_id, password=SHARE_PASSWORD))
    answer = client.post(first, data={"password": SHARE_PASSWORD})
    cookie = answer.headers["Set-Cookie"].split(";")[0]
    # Sent by hand to the other link: it names the first link's id only.
    assert (
        client.get(second + "/download", headers={"Cookie": cookie}).status_code == 401
    )


def test_the_password_is_stored_as_a_scrypt_hash(app, client, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id, password=SHARE_PASSWORD)
    stored = share_row(app, share["id"]).password_hash
    assert stored.startswith("scrypt:") and SHARE_PASSWORD not in stored


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"password": "short"}, "password: password must be 8 to 256 characters"),
        ({"password": 12345678}, "password: password must be a string"),
        (
            {"max_downloads": 0},
            "max_downloads: max_downloads must be from 1 to 1000000",
        ),
        (
            {"max_downloads": "many"},
            "max_downloads: max_downloads must be a whole number",
        ),
        ({"expires_in": 10}, "expires_in: expires_in must be at least 60"),
        ({"expires_in": 31 * 24 * 3600}, "expires_in must be at most 2592000 seconds"),
        (
            {"expires_in": "soon"},
            "expires_in: expires_in must be a whole number of seconds",
        ),
    ],
)
def test_bad_link_settings_are_a_400_that_says_why(
    client, token, shared_file, settings, message
):
    file_id, _ = shared_file
    response = client.post(
        f"/files/{file_id}/shares", json=settings, headers=bearer(token)
    )
    assert response.status_code == 400
    assert response.get_json() == {"message": message}


@pytest.mark.parametrize(
    "app_settings", [{"SHARE_MAX_SECONDS": 3600, "SHARE_DEFAULT_SECONDS": 600}]
)
def test_share_max_seconds_bounds_the_lifetime(app, client, token):
    file_id = uploaded(client, token)["id"]
    too_long = client.post(
        f"/files/{file_id}/shares", json={"expires_in": 3601}, headers=bearer(token)
    )
    assert too_long.status_code == 400
    share = make_share(client, token, file_id)
    with app.app_context():
        row = db.session.get(Share, share["id"])
        assert row.expires_at - row.created_at == timedelta(seconds=600)


def test_other_users_files_and_links_are_404(client, auth, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    auth.create_user("bob")
    bob = auth.token("bob")
    assert (
        client.post(
            f"/files/{file_id}/shares", json={}, headers=bearer(bob)
        ).status_code
        == 404
    )
    assert (
        client.get(f"/files/{file_id}/shares", headers=bearer(bob)).status_code == 404
    )
    refused = client.delete(f"/shares/{share['id']}", headers=bearer(bob))
    assert refused.status_code == 404
    assert client.get(link_path(share) + "/download").status_code == 200
    assert (
        client.delete("/shares/99999999999", headers=bearer(token)).status_code == 404
    )


def test_the_owner_lists_a_files_links_with_their_counts(client, token, shared_file):
    file_id, _ = shared_file
    first = make_share(client, token, file_id, max_downloads=3)
    second = make_share(client, token, file_id, password=SHARE_PASSWORD)
    client.get(link_path(first) + "/download")
    listed = client.get(f"/files/{file_id}/shares", headers=bearer(token)).get_json()
    assert [item["id"] for item in listed["items"]] == [second["id"], first["id"]]
    counted = listed["items"][1]
    assert counted["downloads"] == 1 and counted["max_downloads"] == 3
    assert counted["last_download_at"] is not None
    assert counted["url"] == first["url"]


def test_revoking_a_link_makes_it_gone_at_once(client, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    path = link_path(share)
    assert (
        client.delete(f"/shares/{share['id']}", headers=bearer(token)).status_code
        == 204
    )
    for answer in (client.get(path + "/download"), client.get(path)):
        assert answer.status_code == 410
        assert answer.get_json() == {"message": "This link was revoked by its owner"}
    page = client.get(path, headers=HTML)
    assert page.status_code == 410 and "revoked" in page.get_data(as_text=True)
    # Revoking again is fine; the listing says so.
    assert (
        client.delete(f"/shares/{share['id']}", headers=bearer(token)).status_code
        == 204
    )
    listed = client.get(f"/files/{file_id}/shares", headers=bearer(token)).get_json()
    assert listed["items"][0]["status"] == "revoked"


def test_an_expired_link_is_gone(app, client, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    with app.app_context():
        db.session.execute(
            db.update(Share).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    answer = client.get(link_path(share) + "/download")
    assert answer.status_code == 410
    assert answer.get_json() == {"message": "This link has expired"}
    listed = client.get(f"/files/{file_id}/shares", headers=bearer(token)).get_json()
    assert listed["items"][0]["status"] == "expired"


def test_deleting_the_file_ends_its_links(app, client, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    assert client.delete(f"/files/{file_id}", headers=bearer(token)).status_code == 204
    assert client.get(link_path(share) + "/download").status_code == 404
    with app.app_context():
        assert (
            db.session.execute(
                db.select(db.func.count()).select_from(Share)
            ).scalar_one()
            == 0
        )


def test_deleting_the_user_ends_their_links(app, client, runner, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    result = runner.invoke(args=["users", "delete", "alice", "--yes"])
    assert result.exit_code == 0, result.output
    assert client.get(link_path(share) + "/download").status_code == 404


def test_signing_out_everywhere_ends_the_owners_links(client, auth, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    session = auth.token()
    assert (
        client.post("/logout?everywhere=1", headers=bearer(session)).status_code == 204
    )
    answer = client.get(link_path(share) + "/download")
    assert answer.status_code == 410
    assert answer.get_json() == {"message": "This link was revoked by its owner"}


def test_a_new_password_ends_the_owners_links(client, runner, token, shared_file):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    result = runner.invoke(
        args=["users", "set-password", "alice"], input="another password 1\n"
    )
    assert result.exit_code == 0, result.output
    assert client.get(link_path(share) + "/download").status_code == 410


def test_each_download_takes_one_count_and_its_client_resumes_it_freely(
    app, client, token, shared_file
):
    file_id, content = shared_file
    share = make_share(client, token, file_id, max_downloads=2)
    path = link_path(share) + "/download"
    # HEAD and 304 answers send no byte of the file: they never count.
    etag = client.head(path).headers["ETag"]
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert share_row(app, share["id"]).downloads == 0
    first = client.get(path)
    assert first.status_code == 200 and first.get_data() == content
    row = share_row(app, share["id"])
    assert row.downloads == 1 and row.last_download_at is not None
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("lockbox_claim=") and "HttpOnly" in cookie
    assert f"Path={link_path(share)};" in cookie and "Max-Age=86400" in cookie
    # The client that took the count fetches any ranges, the whole file
    # again too, without counting again.
    for start in (10, 1000, 2999):
        part = client.get(path, headers={"Range": f"bytes={start}-"})
        assert part.status_code == 206 and part.get_data() == content[start:]
    assert client.get(path).get_data() == content
    assert share_row(app, share["id"]).downloads == 1
    # Any other client takes a count of its own, until none is left.
    other = app.test_client()
    assert other.get(path).status_code == 200
    assert share_row(app, share["id"]).downloads == 2
    late = app.test_client()
    used_up = late.get(path)
    assert used_up.status_code == 410
    assert used_up.get_json() == {"message": "This link has reached its download limit"}
    assert late.get(link_path(share), headers=HTML).status_code == 410
    # Those that took one may still resume.
    for holder in (client, other):
        part = holder.get(path, headers={"Range": "bytes=5-"})
        assert part.status_code == 206 and part.get_data() == content[5:]


def test_a_one_time_link_cannot_be_drained_by_breaking_off_downloads(app, token):
    content = random_bytes(3 * 4096 + 5, seed=9)
    owner = app.test_client()
    file_id = uploaded(owner, token, content, "big.bin")["id"]
    path = link_path(make_share(owner, token, file_id, max_downloads=1)) + "/download"
    first = app.test_client().get(path, buffered=False)
    assert first.status_code == 200
    next(iter(first.response))
    first.close()  # gone after one piece: the count stays taken
    for _ in range(3):
        again = app.test_client().get(path, buffered=False)
        assert again.status_code == 410
        again.close()
    assert share_row(app, share_id_of(app, path)).downloads == 1


def test_a_range_from_the_same_address_without_the_claim_is_a_new_download(
    app, client, token, shared_file
):
    file_id, content = shared_file
    path = link_path(make_share(client, token, file_id, max_downloads=1)) + "/download"
    assert app.test_client().get(path).get_data() == content
    # Same address (the test client's), no claim: the link is used up.
    for ask in ("bytes=0-", "bytes=100-", "bytes=-10"):
        assert app.test_client().get(path, headers={"Range": ask}).status_code == 410


def test_the_rest_of_a_file_as_a_range_needs_the_claim(app, client, token, shared_file):
    file_id, content = shared_file
    path = link_path(make_share(client, token, file_id, max_downloads=1)) + "/download"
    cut = len(content) * 79 // 100
    taker = app.test_client()
    head = taker.get(path, headers={"Range": f"bytes=0-{cut - 1}"})
    assert head.status_code == 206 and head.get_data() == content[:cut]
    rest = {"Range": f"bytes={cut}-"}
    assert app.test_client().get(path, headers=rest).status_code == 410
    assert taker.get(path, headers=rest).get_data() == content[cut:]


def test_skipping_the_last_byte_still_takes_the_count(app, client, token, shared_file):
    file_id, content = shared_file
    path = link_path(make_share(client, token, file_id, max_downloads=1)) + "/download"
    short = app.test_client().get(
        path, headers={"Range": f"bytes=0-{len(content) - 2}"}
    )
    assert short.status_code == 206
    assert share_row(app, share_id_of(app, path)).downloads == 1
    assert app.test_client().get(path).status_code == 410


def test_a_claim_in_the_url_resumes_without_cookies(app, client, token, shared_file):
    """curl keeps no cookies: the counted answer says where to resume."""
    file_id, content = shared_file
    path = link_path(make_share(client, token, file_id, max_downloads=1)) + "/download"
    first = app.test_client().get(path)
    resume = first.headers["Content-Location"]
    assert resume.startswith(path + "?claim=")
    cookieless = app.test_client(use_cookies=False)
    part = cookieless.get(resume, headers={"Range": "bytes=7-"})
    assert part.status_code == 206 and part.get_data() == content[7:]
    tampered = resume[:-2] + ("AA" if not resume.endswith("AA") else "BB")
    assert cookieless.get(tampered, headers={"Range": "bytes=7-"}).status_code == 410
    assert share_row(app, share_id_of(app, path)).downloads == 1


@pytest.mark.parametrize("app_settings", [{"SHARE_RESUME_SECONDS": 1}])
def test_a_claim_opens_only_its_own_link_and_only_for_the_resume_window(
    app, client, token, shared_file
):
    file_id, content = shared_file
    first = link_path(make_share(client, token, file_id, max_downloads=1))
    second = link_path(make_share(client, token, file_id, max_downloads=1))
    holder = app.test_client(use_cookies=False)
    claim = holder.get(first + "/download").headers["Content-Location"]
    query = claim.partition("?")[2]
    assert app.test_client().get(second + "/download").status_code == 200
    # The first link's claim, brought to the second (used up) link: refused.
    other = holder.get(f"{second}/download?{query}", headers={"Range": "bytes=1-"})
    assert other.status_code == 410
    time.sleep(2.1)
    late = holder.get(claim, headers={"Range": "bytes=1-"})
    assert late.status_code == 410


@pytest.mark.parametrize("ending", ["used up", "expired", "revoked"])
def test_an_ended_link_is_410_for_every_method_and_condition(
    app, client, token, shared_file, ending
):
    file_id, _ = shared_file
    share = make_share(client, token, file_id, max_downloads=1)
    path = link_path(share) + "/download"
    head = app.test_client().head(path)
    etag, modified = head.headers["ETag"], head.headers["Last-Modified"]
    if ending == "used up":
        assert app.test_client().get(path).status_code == 200
    elif ending == "expired":
        with app.app_context():
            db.session.get(Share, share["id"]).expires_at = utcnow()
            db.session.commit()
    else:
        revoked = client.delete(f"/shares/{share['id']}", headers=bearer(token))
        assert revoked.status_code == 204
    asked = [
        ("HEAD", {}),
        ("GET", {}),
        ("GET", {"If-None-Match": etag}),
        ("GET", {"If-Modified-Since": modified}),
        ("GET", {"Range": "bytes=0-"}),
        ("GET", {"Range": "bytes=0-9", "If-Range": etag}),
        ("HEAD", {"If-None-Match": etag}),
    ]
    for method, headers in asked:
        answer = app.test_client().open(path, method=method, headers=headers)
        assert answer.status_code == 410, (method, headers, answer.status_code)
        page = app.test_client().open(link_path(share), method=method, headers=HTML)
        assert page.status_code == 410, (method, page.status_code)


@pytest.mark.parametrize("app_settings", [{"SHARE_PASSWORD_LIMIT": "3 per minute"}])
def test_wrong_share_passwords_are_limited_per_link(client, token):
    file_id = uploaded(client, token)["id"]
    share = make_share(client, token, file_id, password=SHARE_PASSWORD)
    path = link_path(share) + "/download"
    # Asking without a password is not a wrong guess.
    for _ in range(5):
        assert client.get(path).status_code == 401
    for _ in range(3):
        assert (
            client.get(path, headers=basic_auth("", "guess-guess")).status_code == 401
        )
    limited = client.get(path, headers=basic_auth("", SHARE_PASSWORD))
    assert limited.status_code == 429
    assert limited.get_json() == {
        "message": "Too many password attempts; wait a minute and try again"
    }
    # The page's form counts against the same link.
    assert client.post(link_path(share), data={"password": "x" * 8}).status_code == 429
    # Another link of the same file is not held up by this one.
    other = make_share(client, token, file_id, password=SHARE_PASSWORD)
    fine = client.get(
        link_path(other) + "/download", headers=basic_auth("", SHARE_PASSWORD)
    )
    assert fine.status_code == 200


@pytest.mark.parametrize("app_settings", [{"LOGIN_LIMIT_PER_ADDRESS": "4 per minute"}])
def test_wrong_share_passwords_count_with_sign_ins_per_address(client, token):
    file_id = uploaded(client, token)["id"]
    links = [
        link_path(make_share(client, token, file_id, password=SHARE_PASSWORD))
        for _ in range(5)
    ]
    # The token fixture's sign-in was the first of the address's four
    # attempts; three wrong passwords make the rest.
    for link in links[:3]:
        assert (
            client.get(
                link + "/download", headers=basic_auth("", "wrong-guess")
            ).status_code
            == 401
        )
    assert (
        client.get(
            links[4] + "/download", headers=basic_auth("", SHARE_PASSWORD)
        ).status_code
        == 429
    )
    assert (
        client.get("/login", headers=basic_auth("alice", PASSWORD)).status_code == 429
    )


def test_the_owners_share_page_makes_lists_and_revokes_links(
    client, token, shared_file
):
    file_id, _ = shared_file
    index = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert f"/files/{file_id}/shares?token={token}" in index
    page = client.get(f"/files/{file_id}/shares?token={token}", headers=HTML)
    assert page.status_code == 200 and "No links yet" in page.get_data(as_text=True)
    made = client.post(
        f"/files/{file_id}/shares?token={token}",
        data={"expires_in": "3600", "password": "", "max_downloads": "2"},
        headers=HTML,
    )
    assert made.status_code == 303
    assert made.headers["Location"] == f"/files/{file_id}/shares?token={token}"
    page = client.get(made.headers["Location"], headers=HTML).get_data(as_text=True)
    assert "Link created: http://localhost/s/" in page
    assert "0 / 2" in page and "active" in page
    listed = client.get(f"/files/{file_id}/shares", headers=bearer(token)).get_json()
    share = listed["items"][0]
    assert share["max_downloads"] == 2 and share["has_password"] is False
    revoked = client.post(f"/shares/{share['id']}/revoke?token={token}", headers=HTML)
    assert revoked.status_code == 303
    assert "Link revoked" in client.get(
        revoked.headers["Location"], headers=HTML
    ).get_data(as_text=True)


def test_a_bad_form_on_the_share_page_is_a_readable_400(client, token, shared_file):
    file_id, _ = shared_file
    answer = client.post(
        f"/files/{file_id}/shares?token={token}",
        data={"password": "short", "max_downloads": ""},
        headers=HTML,
    )
    assert answer.status_code == 400
    assert answer.mimetype == "text/html"
    assert "password must be 8 to 256 characters" in answer.get_data(as_text=True)


def test_links_are_not_shown_or_counted_for_unfinished_files(app, client, token):
    with app.app_context():
        owner = db.session.execute(db.select(StoredFile.owner_id)).first()
    assert owner is None  # nothing yet; an unfinished file is never shareable
    response = client.post("/files/12345/shares", json={}, headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json() == {"message": "File not found"}


def test_a_file_has_at_most_a_hundred_links(app, client, token, shared_file):
    file_id, _ = shared_file
    with app.app_context():
        owner = db.session.execute(db.select(StoredFile)).scalar_one().owner
        version = owner.token_version
        db.session.add_all(
            Share(
                public_id=f"bulk{number:012d}",
                owner_id=owner.id,
                file_id=file_id,
                expires_at=utcnow() + timedelta(days=1),
                owner_version=version,
            )
            for number in range(100)
        )
        db.session.commit()
    answer = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    assert answer.status_code == 409
    assert answer.get_json() == {
        "message": "A file may have 100 links; delete some first"
    }


def test_share_link_tokens_have_enough_entropy(client, token, shared_file):
    file_id, _ = shared_file
    links = {link_path(make_share(client, token, file_id)) for _ in range(5)}
    assert len(links) == 5
    for link in links:
        public_id, signature = link.removeprefix("/s/").split(".")
        # 96 random bits of id, and a 256-bit signature only the app can make.
        assert len(base64.urlsafe_b64decode(public_id + "==")) == 12
        assert len(base64.urlsafe_b64decode(signature + "=")) == 32


def test_api_clients_get_the_links_details_as_json(client, token, shared_file):
    file_id, content = shared_file
    share = make_share(client, token, file_id, max_downloads=4)
    details = client.get(link_path(share)).get_json()
    assert details == {
        "filename": "report.pdf",
        "size": len(content),
        "content_type": "application/pdf",
        "description": "Q3 figures",
        "sha256": hashlib.sha256(content).hexdigest(),
        "owner": "alice",
        "expires_at": share["expires_at"],
        "downloads_left": 4,
        "download_url": share["url"] + "/download",
    }


def test_a_locked_link_shows_nothing_of_the_file_until_unlocked(
    client, token, shared_file
):
    file_id, _ = shared_file
    share = make_share(client, token, file_id, password=SHARE_PASSWORD)
    locked = client.get(link_path(share))
    assert locked.status_code == 401
    assert locked.get_json() == {"message": "This link needs its password"}
    assert locked.headers["WWW-Authenticate"] == 'Basic realm="Share"'
    page = client.get(link_path(share), headers=HTML).get_data(as_text=True)
    assert "report.pdf" not in page and "Q3 figures" not in page and "alice" not in page
    opened = client.get(link_path(share), headers=basic_auth("", SHARE_PASSWORD))
    assert opened.status_code == 200 and opened.get_json()["filename"] == "report.pdf"


def test_a_file_deleted_while_its_link_is_made_is_a_404(
    app, client, token, monkeypatch
):
    file_id = uploaded(client, token)["id"]
    real_hash = share_links.hash_password

    def hash_then_delete(password):
        # The file goes, from another request, while the password is hashed.
        with app.app_context():
            db.session.execute(db.delete(FileChunk).filter_by(file_id=file_id))
            db.session.execute(db.delete(StoredFile).filter_by(id=file_id))
            db.session.commit()
        return real_hash(password)

    monkeypatch.setattr(share_links, "hash_password", hash_then_delete)
    answer = client.post(
        f"/files/{file_id}/shares",
        json={"password": SHARE_PASSWORD},
        headers=bearer(token),
    )
    assert answer.status_code == 404
    assert answer.get_json() == {"message": "File not found"}


def test_gc_forgets_counted_downloads_once_they_can_no_longer_be_resumed(
    app, client, runner, token, shared_file
):
    file_id, _ = shared_file
    share = make_share(client, token, file_id)
    # Two clients: each takes a count.
    app.test_client().get(link_path(share) + "/download")
    app.test_client().get(link_path(share) + "/download")
    with app.app_context():
        oldest = db.session.execute(db.select(ShareDownload)).scalars().first()
        oldest.started_at = utcnow() - timedelta(days=1, seconds=1)
        db.session.commit()
    result = runner.invoke(args=["files", "gc"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        left = db.session.execute(db.select(ShareDownload)).scalars().all()
    assert len(left) == 1
    # The count itself stays.
    assert share_row(app, share["id"]).downloads == 2


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(3600, "1 hour"), (604800, "7 days"), (5400, "90 minutes"), (61, "61 seconds")],
)
def test_lifetimes_are_said_as_people_say_them(seconds, said):
    assert formats.human_duration(seconds) == said


@pytest.mark.parametrize(
    "app_settings", [{"SHARE_MAX_SECONDS": 86400, "SHARE_DEFAULT_SECONDS": 3600}]
)
def test_the_share_page_offers_only_lifetimes_the_server_allows(
    client, token, shared_file
):
    file_id, _ = shared_file
    page = client.get(f"/files/{file_id}/shares?token={token}", headers=HTML)
    text = page.get_data(as_text=True)
    assert "Default (1 hour)" in text and 'value="86400"' in text
    assert 'value="604800"' not in text and 'value="2592000"' not in text


def test_the_page_of_an_ended_link_tells_its_holder_whom_to_ask(
    client, token, shared_file
):
    share = make_share(client, token, shared_file[0])
    client.delete(f"/shares/{share['id']}", headers=bearer(token))
    page = client.get(link_path(share), headers=HTML)
    assert page.status_code == 410
    text = page.get_data(as_text=True)
    assert "No longer available" in text
    assert "This link was revoked by its owner" in text
    assert "Ask the person who sent you the link for a new one." in text
    # Whoever holds a link has no account here: no way into one.
    assert "your files" not in text and "Sign in" not in text
    missing = client.get("/s/" + "x" * 60, headers=HTML).get_data(as_text=True)
    assert "Check that the whole link was copied" in missing
