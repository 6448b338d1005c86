"""Upload requests: links that let someone without an account send files
into the owner's account, within caps, the owner's quota and nothing else."""

import base64
import io
from datetime import timedelta

import pytest

from helpers import (
    HTML,
    basic_auth,
    bearer,
    end,
    part,
    send_piece,
    tus_headers,
    tus_metadata,
)
from models import StoredFile, UploadRequest, db, utcnow

MIB = 1024 * 1024


def make_request(client, token, **settings) -> dict:
    """POST /requests that must succeed; the answer's JSON."""
    settings.setdefault("title", "Holiday photos")
    answer = client.post("/requests", json=settings, headers=bearer(token))
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def link_of(made: dict) -> str:
    """The request's path."""
    return made["url"].removeprefix("http://localhost")


def guest_upload(client, link, content: bytes, name="photo.jpg", **headers):
    """A guest's whole tus upload; the creation's answer (and the PATCH's)."""
    created = client.post(
        f"{link}/uploads",
        headers=tus_headers(
            Upload_Length=len(content),
            Upload_Metadata=tus_metadata(filename=name),
            **headers,
        ),
    )
    if created.status_code != 201:
        return created, None
    path = created.headers["Location"].removeprefix("http://localhost")
    patched = send_piece(client, path, 0, content) if content else None
    return created, patched


def owners_files(app, owner="alice") -> list[StoredFile]:
    """The owner's finished files."""
    with app.app_context():
        return list(
            db.session.execute(
                db.select(StoredFile).where(StoredFile.complete.is_(True))
            ).scalars()
        )


def test_an_owner_asks_and_a_guest_sends_a_file(app, client, token):
    made = make_request(client, token, note="From the trip, please")
    assert made["status"] == "active" and made["files"] == []
    assert made["max_bytes"] == app.config["REQUEST_MAX_BYTES"]
    assert made["url"].startswith("http://localhost/r/")
    guest = app.test_client()
    page = guest.get(link_of(made)).get_json()
    assert page["title"] == "Holiday photos" and page["owner"] == "alice"
    assert page["note"] == "From the trip, please" and page["files_left"] is None
    created, patched = guest_upload(guest, link_of(made), b"jpeg bytes" * 100)
    assert created.status_code == 201 and patched.status_code == 204
    listed = client.get("/requests", headers=bearer(token)).get_json()["items"][0]
    assert [each["filename"] for each in listed["files"]] == ["photo.jpg"]
    # It is the owner's file now, marked with the request it came through.
    (stored,) = owners_files(app)
    assert stored.request_id == made["id"] and stored.size == 1000
    answer = client.get(f"/files/{stored.id}/download", headers=bearer(token))
    assert answer.data == b"jpeg bytes" * 100


def test_the_guest_page_has_the_note_and_a_form(app, client, token):
    made = make_request(client, token, note="Thanks!")
    page = app.test_client().get(link_of(made), headers=HTML).get_data(as_text=True)
    assert "Holiday photos" in page and "Thanks!" in page
    assert f'action="{link_of(made)}/upload"' in page
    assert "asks you for files" in page


def test_the_plain_form_sends_a_file_too(app, client, token):
    made = make_request(client, token)
    guest = app.test_client()
    body = part("inputFile", b"no script", "plain.txt", "text/plain") + end()
    answer = guest.post(
        f"{link_of(made)}/upload",
        data=body,
        content_type="multipart/form-data; boundary=XyZ",
        headers=HTML,
    )
    assert answer.status_code == 303
    assert "plain.txt sent to alice" in guest.get(
        answer.headers["Location"], headers=HTML
    ).get_data(as_text=True)
    (stored,) = owners_files(app)
    assert stored.filename == "plain.txt" and stored.request_id == made["id"]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"title": ""}, "title must be 1 to 120 characters"),
        ({"note": "x" * 1001}, "note must be at most 1000 characters"),
        ({"max_files": 0}, "max_files must be from 1 to 100000"),
        ({"max_bytes": 11 * 1024 * MIB}, "max_bytes must be at most"),
        ({"expires_in": 365 * 86400}, "expires_in must be at most"),
        ({"password": "short"}, "password must be 8 to 256 characters"),
    ],
)
def test_a_bad_request_is_a_400_that_says_why(client, token, settings, message):
    answer = client.post(
        "/requests", json={"title": "x", **settings}, headers=bearer(token)
    )
    assert answer.status_code == 400
    assert message in answer.get_json()["message"]


def test_a_request_takes_at_most_its_files(app, client, token):
    made = make_request(client, token, max_files=2)
    guest = app.test_client()
    for name in ("one.txt", "two.txt"):
        created, _ = guest_upload(guest, link_of(made), b"x" * 10, name)
        assert created.status_code == 201
    created, _ = guest_upload(guest, link_of(made), b"x" * 10, "three.txt")
    assert created.status_code == 410
    assert created.get_json() == {
        "message": "This upload request has all the files it can take"
    }
    assert guest.get(link_of(made)).status_code == 410
    assert len(owners_files(app)) == 2


def test_a_request_takes_at_most_its_bytes(app, client, token):
    made = make_request(client, token, max_bytes=100)
    guest = app.test_client()
    created, _ = guest_upload(guest, link_of(made), b"x" * 101)
    assert created.status_code == 413
    assert created.get_json() == {
        "message": "This request takes 100 more bytes; the file has 101"
    }
    assert guest_upload(guest, link_of(made), b"x" * 60)[0].status_code == 201
    created, _ = guest_upload(guest, link_of(made), b"x" * 50)
    assert created.status_code == 413
    assert guest.get(link_of(made)).get_json()["bytes_left"] == 40


@pytest.mark.parametrize("app_settings", [{"STORAGE_QUOTA_BYTES": 1000}])
def test_what_a_guest_sends_counts_against_the_owners_quota(app, client, token):
    made = make_request(client, token)
    created, _ = guest_upload(app.test_client(), link_of(made), b"x" * 1001)
    assert created.status_code == 413
    assert "Storage quota exceeded" in created.get_json()["message"]
    assert owners_files(app) == []


def test_a_length_must_be_announced(app, client, token):
    made = make_request(client, token)
    answer = app.test_client().post(
        f"{link_of(made)}/uploads", headers=tus_headers(Upload_Defer_Length=1)
    )
    assert answer.status_code == 400
    assert "Upload-Length" in answer.get_json()["message"]


def test_closed_expired_and_withdrawn_requests_are_410(app, client, auth, token):
    closed = make_request(client, token, title="closed")
    answer = client.post(f"/requests/{closed['id']}/close", headers=bearer(token))
    assert answer.status_code == 200 and answer.get_json()["status"] == "closed"
    expired = make_request(client, token, title="expired")
    with app.app_context():
        row = db.session.get(UploadRequest, expired["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    guest = app.test_client()
    for made, message in [
        (closed, "This upload request was closed by its owner"),
        (expired, "This upload request has expired"),
    ]:
        for answer in (
            guest.get(link_of(made)),
            guest_upload(guest, link_of(made), b"x")[0],
        ):
            assert answer.status_code == 410
            assert answer.get_json() == {"message": message}
    page = guest.get(link_of(closed), headers=HTML)
    assert page.status_code == 410 and "closed by its owner" in page.get_data(True)
    withdrawn = make_request(client, token, title="withdrawn")
    client.post("/logout?everywhere=1", headers=bearer(token))
    assert guest.get(link_of(withdrawn)).status_code == 410


def test_a_tampered_link_opens_nothing(app, client, token):
    made = make_request(client, token)
    link = link_of(made)
    # The id's first character: every bit of it counts (a signature's last
    # base64 character carries bits that do not).
    first = link[len("/r/")]
    tampered = "/r/" + ("A" if first != "A" else "B") + link[len("/r/") + 1 :]
    guest = app.test_client()
    assert guest.get(tampered).status_code == 404
    assert guest_upload(guest, tampered, b"x")[0].status_code == 404
    # A request's link is no share link, and no token.
    assert guest.get(link.replace("/r/", "/s/")).status_code == 404
    secret = link.removeprefix("/r/")
    assert guest.get("/files", headers=bearer(secret)).status_code == 401
    assert guest.get(f"/files?token={secret}").status_code == 401


def test_a_guest_sees_nothing_of_the_owners(app, client, token):
    made = make_request(client, token)
    client.post(
        "/upload",
        data={"inputFile": (io.BytesIO(b"private"), "private.txt")},
        headers=bearer(token),
    )
    guest = app.test_client()
    created, _ = guest_upload(guest, link_of(made), b"sent")
    key_path = created.headers["Location"].removeprefix("http://localhost")
    page = guest.get(link_of(made), headers=HTML).get_data(as_text=True)
    assert "private.txt" not in page
    for path in ("/files", "/", "/account", "/requests", "/files/1/download"):
        assert guest.get(path).status_code == 401, path
    # The key of what they sent opens that one upload, now finished.
    assert guest.head(key_path, headers=tus_headers()).status_code == 200


def test_a_password_request_needs_its_password(app, client, token):
    made = make_request(client, token, password="correct horse")
    link = link_of(made)
    guest = app.test_client()
    answer = guest.get(link)
    assert answer.status_code == 401
    assert answer.get_json() == {"message": "This upload request needs its password"}
    assert guest_upload(guest, link, b"x")[0].status_code == 401
    basic = {
        "Authorization": "Basic " + base64.b64encode(b"any:correct horse").decode()
    }
    assert guest_upload(guest, link, b"x", **basic)[0].status_code == 201
    wrong = guest.post(link, data={"password": "wrong one"}, headers=HTML)
    assert wrong.status_code == 401 and "Wrong password" in wrong.get_data(True)
    unlocked = guest.post(link, data={"password": "correct horse"}, headers=HTML)
    assert unlocked.status_code == 303
    assert guest.get(link).status_code == 200
    assert guest_upload(guest, link, b"y", name="second.txt")[0].status_code == 201


def test_deleting_a_request_keeps_what_it_received(app, client, token):
    made = make_request(client, token)
    guest_upload(app.test_client(), link_of(made), b"kept")
    answer = client.delete(f"/requests/{made['id']}", headers=bearer(token))
    assert answer.status_code == 204
    (stored,) = owners_files(app)
    assert stored.request_id is None
    assert app.test_client().get(link_of(made)).status_code == 404
    assert (
        client.delete(f"/requests/{made['id']}", headers=bearer(token)).status_code
        == 404
    )


def test_another_accounts_request_is_not_found(client, auth, token):
    made = make_request(client, token)
    auth.create_user("bob")
    bob = bearer(auth.token("bob"))
    assert client.post(f"/requests/{made['id']}/close", headers=bob).status_code == 404
    assert client.delete(f"/requests/{made['id']}", headers=bob).status_code == 404
    assert client.get("/requests", headers=bob).get_json() == {"items": []}


def test_the_owners_page_makes_and_closes_requests(client, token):
    page = client.get(f"/requests?token={token}", headers=HTML)
    assert page.status_code == 200 and "No requests yet" in page.get_data(True)
    made = client.post(
        f"/requests?token={token}",
        data={"title": "Scans", "note": "", "max_files": "", "max_bytes": ""},
        headers=HTML,
    )
    assert made.status_code == 303
    page = client.get(made.headers["Location"], headers=HTML).get_data(as_text=True)
    assert "Request created: http://localhost/r/" in page and "Scans" in page
    listed = client.get("/requests", headers=bearer(token)).get_json()["items"][0]
    closed = client.post(f"/requests/{listed['id']}/close?token={token}", headers=HTML)
    assert closed.status_code == 303
    assert (
        client.get("/requests", headers=bearer(token)).get_json()["items"][0]["status"]
        == "closed"
    )


def test_the_cli_makes_lists_and_closes_requests(app, client, runner, token):
    result = runner.invoke(
        args=[
            "requests",
            "create",
            "alice",
            "--title",
            "Scans",
            "--max-files",
            "3",
            "--max-bytes",
            "1MiB",
            "--base-url",
            "https://files.example.org",
        ]
    )
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert url.startswith("https://files.example.org/r/")
    link = url.removeprefix("https://files.example.org")
    page = app.test_client().get(link).get_json()
    assert page["files_left"] == 3 and page["bytes_left"] == 1024 * 1024
    listing = runner.invoke(args=["requests", "list", "alice"])
    assert "\tactive\t0 files, 0 B\tuntil " in listing.output
    assert listing.output.rstrip().endswith("Scans")
    request_id = listing.output.split("\t")[0]
    closed = runner.invoke(args=["requests", "close", "alice", request_id])
    assert closed.exit_code == 0 and "closed" in closed.output
    assert app.test_client().get(link).status_code == 410
    bad = runner.invoke(args=["requests", "create", "alice", "--title", ""])
    assert bad.exit_code != 0 and "title must be 1 to 120 characters" in bad.output
    for number in ("999", str(2**63)):
        missing = runner.invoke(args=["requests", "close", "alice", number])
        assert missing.exit_code != 0
        assert f"no upload request {number}" in missing.output


@pytest.mark.parametrize("app_settings", [{"SHARE_PASSWORD_LIMIT": "3 per minute"}])
def test_wrong_request_passwords_are_limited_per_link(app, client, token):
    made = make_request(client, token, password="correct horse")
    link = link_of(made)
    guest = app.test_client()
    # Asking without a password is not a wrong guess.
    for _ in range(5):
        assert guest.get(link).status_code == 401
    for attempt in range(3):
        wrong = basic_auth("", f"guess-{attempt}-guess")
        assert guest_upload(guest, link, b"x", **wrong)[0].status_code == 401
    limited = guest.get(link, headers=basic_auth("", "correct horse"))
    assert limited.status_code == 429
    assert limited.get_json() == {
        "message": "Too many password attempts; wait a minute and try again"
    }
    # The page's form counts against the same link; another request does not.
    assert guest.post(link, data={"password": "x" * 8}).status_code == 429
    other = link_of(make_request(client, token, password="correct horse"))
    assert guest.get(other, headers=basic_auth("", "correct horse")).status_code == 200


def test_a_request_takes_only_the_kinds_of_file_it_asks_for(app, client, token):
    made = make_request(client, token, allowed_types=".PDF,  image/*")
    assert made["allowed_types"] == ".pdf, image/*"
    link = link_of(made)
    guest = app.test_client()
    page = guest.get(link, headers=HTML).get_data(as_text=True)
    assert 'accept=".pdf, image/*"' in page and "only .pdf, image/*" in page
    assert guest_upload(guest, link, b"%PDF", "scan.PDF")[0].status_code == 201
    assert guest_upload(guest, link, b"jpeg", "photo.jpg")[0].status_code == 201
    refused, _ = guest_upload(guest, link, b"text", "notes.txt")
    assert refused.status_code == 415
    assert refused.get_json() == {
        "message": "This request takes only these kinds of file: .pdf, image/*"
    }
    body = part("inputFile", b"text", "notes.txt", "text/plain") + end()
    form = guest.post(
        f"{link}/upload", data=body, content_type="multipart/form-data; boundary=XyZ"
    )
    assert form.status_code == 415
    assert {f.filename for f in owners_files(app)} == {"scan.PDF", "photo.jpg"}
    bad = client.post(
        "/requests",
        json={"title": "x", "allowed_types": "pdf files"},
        headers=bearer(token),
    )
    assert bad.status_code == 400
    assert "allowed_types must be file endings" in bad.get_json()["message"]
