"""Files that expire: the lifetime an upload asks for (a form field, tus
metadata), the account's default, the server's longest lifetime, changing a
file's expiry, an expired file gone at once from everything that shows,
counts or shares it, and `files gc` removing it for good."""

import hashlib
import io
import re
import zipfile
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest

from helpers import (
    HTML,
    bearer,
    create_upload,
    end,
    multipart_upload,
    part,
    raw_upload,
    recorded_statements,
    row_counts,
    rows_of,
    send_piece,
    tus_headers,
    tus_metadata,
    upload_count,
    upload_path,
    uploaded,
)
from models import StoredFile, User, db, utcnow

HOUR, DAY = 3600, 86400
# What the clock may move between the test's "now" and the app's.
SLACK = timedelta(seconds=5)
LIFETIME_ERROR = 'a lifetime is seconds, a duration such as 12h or 7d, or "never"'
LIFETIME_FORMAT = (
    "expires_in must be a lifetime such as 3600, 12h or 7d (1 minute to 3650 "
    'days), or "never"'
)
NOT_FOUND = {"message": "File not found"}
ADMIN = "root"
FILE_EXPIRED = "The file behind this link has expired"
EMPTIED = "The files of this link were deleted by their owner, or expired"
WITH_QUOTA = pytest.mark.parametrize(
    "app_settings", [{"STORAGE_QUOTA_BYTES": 10000}], ids=["quota10000"]
)


# --- helpers ------------------------------------------------------------------


def at(text: str) -> datetime:
    """A time the API gave (ISO 8601, with its offset)."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    return moment


def assert_expires_in(text: str | None, seconds: int, since: datetime) -> None:
    """``text`` is about ``seconds`` after a moment between ``since`` and now."""
    assert text is not None
    expires_at = at(text)
    low = since + timedelta(seconds=seconds) - SLACK
    high = utcnow() + timedelta(seconds=seconds) + SLACK
    assert low <= expires_at <= high, (text, seconds)


def upload_for(client, token, expires_in=None, content=b"hello", name="hello.bin"):
    """A form upload asking for ``expires_in`` (None: not sent), which must be
    accepted; its metadata."""
    after = [] if expires_in is None else [("expires_in", expires_in)]
    return uploaded(client, token, content, name, after=after)


def metadata(client, token, file_id):
    """GET /files/<id>; the answer."""
    return client.get(f"/files/{file_id}", headers=bearer(token))


def expiry_shown(client, token, file_id) -> str | None:
    """The expires_at GET /files/<id> gives."""
    answer = metadata(client, token, file_id)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["expires_at"]


def listing(client, token, **query) -> dict:
    """GET /files, which must answer."""
    answer = client.get("/files", query_string=query, headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def account(client, token) -> dict:
    """GET /account, which must answer."""
    answer = client.get("/account", headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def set_lifetime(client, token, lifetime):
    """POST /account/file-lifetime as JSON; the answer."""
    return client.post(
        "/account/file-lifetime", json={"lifetime": lifetime}, headers=bearer(token)
    )


def patch(client, token, file_id, body):
    """PATCH /files/<id> with a JSON body; the answer."""
    return client.patch(f"/files/{file_id}", json=body, headers=bearer(token))


def expire(app, *file_ids, seconds_ago=1) -> None:
    """Move these files' expiry into the past, as the clock would."""
    with app.app_context():
        db.session.execute(
            db.update(StoredFile)
            .where(StoredFile.id.in_(file_ids))
            .values(expires_at=utcnow() - timedelta(seconds=seconds_ago))
        )
        db.session.commit()
        db.session.remove()


def expiry_of(app, file_id) -> datetime | None:
    """The file's expires_at as stored now."""
    with app.app_context():
        value = db.session.execute(
            db.select(StoredFile.expires_at).where(StoredFile.id == file_id)
        ).scalar_one()
        db.session.remove()
        return value


def stored_file_count(app, username="alice") -> int:
    """The account's stored count of finished files (User.file_count)."""
    with app.app_context():
        count = db.session.execute(
            db.select(User.file_count).where(User.username == username)
        ).scalar_one()
        db.session.remove()
        return count


def admin_token(auth, runner) -> str:
    """A session of root, made an administrator."""
    auth.create_user(ADMIN)
    result = runner.invoke(args=["users", "set-role", ADMIN, "admin"])
    assert result.exit_code == 0, result.output
    return auth.token(ADMIN)


def set_policies(client, admin, **values) -> dict:
    """POST /admin/policies as JSON, which must succeed; the policies now."""
    answer = client.post("/admin/policies", json=values, headers=bearer(admin))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def select_options(page: str, select_id: str) -> list[tuple[str, str]]:
    """The (value, words) of each option of a page's select."""
    match = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', page, re.S)
    assert match, page
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', match[1])


def tus_file(client, token, content=b"resumed", **metadata_fields) -> int:
    """A whole tus upload with this metadata; the id of the file it became."""
    created = create_upload(
        client,
        token,
        len(content),
        Upload_Metadata=tus_metadata(filename="t.bin", **metadata_fields),
    )
    path = upload_path(created)
    answer = send_piece(client, path, 0, content)
    assert answer.status_code == 204, answer.get_json()
    return int(answer.headers["Lockbox-File-Id"])


def make_share(client, token, file_id) -> str:
    """A new link to one file; its path."""
    answer = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["url"].removeprefix("http://localhost")


def make_several_link(client, token, file_ids) -> str:
    """A new link to several files; its path."""
    answer = client.post("/shares", json={"file_ids": file_ids}, headers=bearer(token))
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["url"].removeprefix("http://localhost")


def zip_names(body: bytes) -> dict[str, str]:
    """A zip's members: name to SHA-256."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        return {
            info.filename: hashlib.sha256(archive.read(info)).hexdigest()
            for info in archive.infolist()
        }


def make_request(client, token) -> str:
    """A new upload request; its path."""
    answer = client.post("/requests", json={"title": "Scans"}, headers=bearer(token))
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["url"].removeprefix("http://localhost")


def guest_tus(guest, link, content, name, **metadata_fields) -> int:
    """A guest's whole tus upload to a request; the id of its file."""
    created = guest.post(
        f"{link}/uploads",
        headers=tus_headers(
            Upload_Length=len(content),
            Upload_Metadata=tus_metadata(filename=name, **metadata_fields),
        ),
    )
    path = upload_path(created)
    answer = send_piece(guest, path, 0, content)
    assert answer.status_code == 204, answer.get_json()
    return int(answer.headers["Lockbox-File-Id"])


def guest_form(guest, link, content, name, expires_in=None):
    """A guest's plain form upload to a request (a field asking a lifetime,
    if given); the answer."""
    body = part("inputFile", content, name, "text/plain")
    if expires_in is not None:
        body += part("expires_in", expires_in.encode())
    return guest.post(
        f"{link}/upload",
        data=body + end(),
        content_type="multipart/form-data; boundary=XyZ",
    )


# --- 1. a form upload's lifetime ----------------------------------------------------


# What a form's expires_in asks for (None: no field), and the lifetime it gives.
LIFETIMES = [
    ("1h", HOUR),
    ("7d", 7 * DAY),
    ("3600", HOUR),
    ("60", 60),
    ("3650d", 3650 * DAY),
    ("90m", 90 * 60),
    (" 2W ", 14 * DAY),
    ("never", None),
    ("NEVER", None),
    ("", None),
    (None, None),
]


def test_a_form_upload_expires_as_it_asks(client, token):
    made = []
    for expires_in, seconds in LIFETIMES:
        since = utcnow()
        body = upload_for(client, token, expires_in)
        if seconds is None:
            assert body["expires_at"] is None, expires_in
        else:
            assert_expires_in(body["expires_at"], seconds, since)
        shown = metadata(client, token, body["id"])
        assert shown.status_code == 200
        assert shown.get_json() == body
        made.append(body)
    page = listing(client, token, per_page=20)
    assert page["total"] == len(LIFETIMES)
    # Newest first; each says whether it expires, as its metadata does (its
    # format: see the next test).
    assert [item["id"] for item in page["items"]] == [body["id"] for body in made][::-1]
    assert [item["expires_at"] is None for item in page["items"]] == [
        seconds is None for _, seconds in LIFETIMES
    ][::-1]


def test_the_listing_gives_expires_at_as_the_files_metadata_does(client, token):
    since = utcnow()
    body = upload_for(client, token, "1d")
    assert_expires_in(body["expires_at"], DAY, since)
    # The same ISO 8601 text, with its offset, as GET /files/<id> gives.
    assert body["expires_at"].endswith("+00:00")
    [item] = listing(client, token)["items"]
    assert item == body
    assert at(item["expires_at"]) == at(body["expires_at"])


def test_the_lifetime_field_may_come_before_the_file(client, token):
    since = utcnow()
    answer = multipart_upload(
        client, token, b"first", "first.bin", before=[("expires_in", "12h")]
    )
    assert answer.status_code == 201, answer.get_json()
    assert_expires_in(answer.get_json()["expires_at"], 12 * HOUR, since)


def test_the_upload_page_offers_every_lifetime_without_a_policy(client, token):
    page = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert select_options(page, "expires-in") == [
        ("", "Your default: until deleted"),
        ("1h", "1 hour"),
        ("1d", "1 day"),
        ("7d", "7 days"),
        ("30d", "30 days"),
        ("365d", "1 year"),
        ("never", "Until deleted"),
    ]


def test_the_upload_page_lists_a_files_expiry(client, token):
    body = upload_for(client, token, "1d", name="soon.txt")
    upload_for(client, token, None, name="kept.txt")
    page = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    when = at(body["expires_at"]).strftime("%Y-%m-%d %H:%M")
    assert page.count('class="hint expires"') == 1
    assert f"{when} UTC</time></span>" in page


BAD_LIFETIMES = ["0", "30", "59", "abc", "4000d", "-5", "1y", "1.5h", "never ever"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_bad_lifetime_stores_nothing(app, client, token, where):
    for expires_in in BAD_LIFETIMES:
        fields = {where: [("expires_in", expires_in)]}
        answer = multipart_upload(client, token, b"x" * 5000, "bad.bin", **fields)
        assert answer.status_code == 400, expires_in
        assert answer.get_json() == {"message": LIFETIME_FORMAT}
        assert row_counts(app) == (0, 0), expires_in
    assert listing(client, token)["total"] == 0


def test_a_lifetime_too_long_for_the_form_is_refused(app, client, token):
    answer = multipart_upload(client, token, after=[("expires_in", "1" * 33)])
    assert answer.status_code == 400
    assert answer.get_json() == {"message": "expires_in: " + LIFETIME_ERROR}
    assert row_counts(app) == (0, 0)


def written_files(statements: list[str]) -> list[str]:
    """The statements that wrote file or chunk rows."""
    return [
        statement
        for statement in statements
        if re.match(r"\s*(insert|update|delete)", statement, re.I)
        and re.search(r"stored_file|file_chunk", statement, re.I)
    ]


def test_a_bad_lifetime_before_the_file_is_refused_before_any_byte_is_stored(
    app, client, token
):
    file_part = part("inputFile", b"y" * 10000, "never-stored.bin")
    bad = part("expires_in", b"abc")
    with recorded_statements(app) as statements:
        answer = raw_upload(client, token, bad + file_part + end())
    assert answer.status_code == 400
    assert answer.get_json() == {"message": LIFETIME_FORMAT}
    assert written_files(statements) == []
    assert row_counts(app) == (0, 0)
    # After the file, the same field is refused once the file was begun (and
    # it is removed).
    with recorded_statements(app) as statements:
        answer = raw_upload(client, token, file_part + bad + end())
    assert answer.status_code == 400
    assert answer.get_json() == {"message": LIFETIME_FORMAT}
    written = written_files(statements)
    assert any(s.lower().startswith("insert into stored_file") for s in written)
    assert row_counts(app) == (0, 0)


# --- 2. a tus upload's lifetime -----------------------------------------------


def test_a_tus_upload_expires_as_its_metadata_asks(client, token):
    since = utcnow()
    file_id = tus_file(client, token, expires_in="2h")
    shown = metadata(client, token, file_id).get_json()
    assert shown["filename"] == "t.bin" and shown["size"] == 7
    assert_expires_in(shown["expires_at"], 2 * HOUR, since)
    assert (
        expiry_shown(client, token, tus_file(client, token, expires_in="never")) is None
    )
    assert expiry_shown(client, token, tus_file(client, token)) is None


@pytest.mark.parametrize("with_body", [True, False], ids=["first-piece", "empty"])
def test_a_tus_upload_with_a_bad_lifetime_is_refused_at_creation(
    app, client, token, with_body
):
    for expires_in in ("abc", "0", "4000d", "-5"):
        answer = create_upload(
            client,
            token,
            5,
            body=b"hello" if with_body else None,
            Upload_Metadata=tus_metadata(filename="t.bin", expires_in=expires_in),
        )
        assert answer.status_code == 400, expires_in
        assert answer.get_json() == {"message": LIFETIME_FORMAT}
        assert "Location" not in answer.headers
        assert upload_count(app) == 0
    assert row_counts(app) == (0, 0)


# --- 3. the account's default -------------------------------------------------


def test_the_account_default_is_set_as_text_or_seconds(client, token):
    assert account(client, token)["file_lifetime_seconds"] is None
    answer = set_lifetime(client, token, "7d")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["file_lifetime_seconds"] == 7 * DAY
    assert body["max_file_seconds"] is None and body["username"] == "alice"
    answer = set_lifetime(client, token, 86400)
    assert answer.status_code == 200
    assert answer.get_json()["file_lifetime_seconds"] == DAY
    assert account(client, token)["file_lifetime_seconds"] == DAY


def test_new_uploads_take_the_default_and_may_ask_otherwise(app, client, token):
    kept = upload_for(client, token, None, name="before.txt")
    assert set_lifetime(client, token, "3d").status_code == 200
    since = utcnow()
    assert_expires_in(upload_for(client, token, None)["expires_at"], 3 * DAY, since)
    # The page's "Your default" option sends an empty field.
    assert_expires_in(upload_for(client, token, "")["expires_at"], 3 * DAY, since)
    assert_expires_in(upload_for(client, token, "1h")["expires_at"], HOUR, since)
    assert upload_for(client, token, "never")["expires_at"] is None
    tus_id = tus_file(client, token)
    assert_expires_in(expiry_shown(client, token, tus_id), 3 * DAY, since)
    # A file already kept keeps its expiry.
    assert metadata(client, token, kept["id"]).get_json()["expires_at"] is None
    assert expiry_of(app, kept["id"]) is None
    # "never" clears the default.
    answer = set_lifetime(client, token, "never")
    assert answer.status_code == 200
    assert answer.get_json()["file_lifetime_seconds"] is None
    assert upload_for(client, token, None)["expires_at"] is None


def test_the_account_page_sets_the_default_through_its_form(client, token):
    answer = client.post(
        f"/account/file-lifetime?token={token}", data={"lifetime": "30d"}, headers=HTML
    )
    assert answer.status_code == 303
    assert urlsplit(answer.headers["Location"]).path == "/account"
    page = client.get(f"/account?token={token}", headers=HTML).get_data(as_text=True)
    assert "Now: For 30 days." in page
    assert "New files are kept for 30 days" in page
    assert '<option value="30d" selected>30 days</option>' in page
    assert account(client, token)["file_lifetime_seconds"] == 30 * DAY
    index = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert select_options(index, "expires-in")[0] == ("", "Your default: for 30 days")


BAD_DEFAULTS = [
    ("abc", LIFETIME_FORMAT),
    ("0", LIFETIME_FORMAT),
    (59, LIFETIME_FORMAT),
    (-5, LIFETIME_FORMAT),
    ("4000d", LIFETIME_FORMAT),
    ("-5", LIFETIME_FORMAT),
    ("", "lifetime: " + LIFETIME_ERROR),
    (True, "lifetime: Not a valid string."),
    (1.5, "lifetime: Not a valid string."),
    (None, "lifetime: Field may not be null."),
]


def test_a_bad_default_is_refused_and_changes_nothing(client, token):
    assert set_lifetime(client, token, "1d").status_code == 200
    for lifetime, message in BAD_DEFAULTS:
        answer = set_lifetime(client, token, lifetime)
        assert answer.status_code == 400, lifetime
        assert answer.get_json() == {"message": message}, lifetime
    assert account(client, token)["file_lifetime_seconds"] == DAY
    form = client.post(
        f"/account/file-lifetime?token={token}", data={"lifetime": "abc"}, headers=HTML
    )
    assert form.status_code == 400
    assert LIFETIME_FORMAT.replace('"', "&#34;") in form.get_data(as_text=True)
    assert account(client, token)["file_lifetime_seconds"] == DAY


def test_a_default_without_a_lifetime_is_refused(client, token):
    answer = client.post("/account/file-lifetime", json={}, headers=bearer(token))
    assert answer.status_code == 400
    assert answer.get_json() == {
        "message": "lifetime: Missing data for required field."
    }


# --- 4. the server's longest lifetime -----------------------------------------


@pytest.fixture
def admin(auth, runner, token) -> str:
    """root's session (alice signed up first)."""
    return admin_token(auth, runner)


MAX_DAY = "Files on this server may be kept at most 1 day"


def test_the_policy_refuses_uploads_asking_longer_or_never(app, client, token, admin):
    assert set_policies(client, admin, max_file_seconds=DAY)["max_file_seconds"] == DAY
    for asked in ("never", "2d", "86461"):
        answer = multipart_upload(client, token, after=[("expires_in", asked)])
        assert answer.status_code == 400, asked
        assert answer.get_json() == {"message": MAX_DAY}
    tus = create_upload(
        client, token, 5, Upload_Metadata=tus_metadata(expires_in="never")
    )
    assert tus.status_code == 400
    assert tus.get_json() == {"message": MAX_DAY}
    assert row_counts(app) == (0, 0) and upload_count(app) == 0
    since = utcnow()
    # Exactly the limit, less, or nothing asked (the limit).
    assert_expires_in(upload_for(client, token, "1d")["expires_at"], DAY, since)
    assert_expires_in(upload_for(client, token, "1h")["expires_at"], HOUR, since)
    assert_expires_in(upload_for(client, token, None)["expires_at"], DAY, since)
    tus_id = tus_file(client, token)
    assert_expires_in(expiry_shown(client, token, tus_id), DAY, since)


def test_the_policy_keeps_a_default_set_before_it(app, client, token, admin):
    kept = upload_for(client, token, None, name="kept.txt")
    assert set_lifetime(client, token, "7d").status_code == 200
    set_policies(client, admin, max_file_seconds=2 * DAY)
    since = utcnow()
    assert_expires_in(upload_for(client, token, None)["expires_at"], 2 * DAY, since)
    body = account(client, token)
    assert (body["file_lifetime_seconds"], body["max_file_seconds"]) == (
        7 * DAY,
        2 * DAY,
    )
    # Shorter than the limit: kept as it is.
    assert set_lifetime(client, token, "1d").status_code == 200
    assert_expires_in(upload_for(client, token, None)["expires_at"], DAY, since)
    # A file kept before the policy keeps its expiry (none).
    assert metadata(client, token, kept["id"]).get_json()["expires_at"] is None


def test_the_policy_clips_an_account_that_keeps_files_forever(client, token, admin):
    set_policies(client, admin, max_file_seconds=3 * HOUR)
    since = utcnow()
    assert_expires_in(upload_for(client, token, None)["expires_at"], 3 * HOUR, since)
    page = client.get(f"/account?token={token}", headers=HTML).get_data(as_text=True)
    assert "Now: For 3 hours (this server keeps a file for 3 hours at most)." in page


def test_the_policy_refuses_a_longer_default(client, token, admin):
    set_policies(client, admin, max_file_seconds=DAY)
    for lifetime in ("2d", "never", 90000):
        answer = set_lifetime(client, token, lifetime)
        assert answer.status_code == 400, lifetime
        assert answer.get_json() == {"message": MAX_DAY}
    assert account(client, token)["file_lifetime_seconds"] is None
    answer = set_lifetime(client, token, "1d")
    assert answer.status_code == 200
    assert answer.get_json()["file_lifetime_seconds"] == DAY


def test_the_policy_refuses_a_default_a_second_longer(client, token, admin):
    set_policies(client, admin, max_file_seconds=DAY)
    for lifetime in (86401, "86401", 86459, "1441m"):
        answer = set_lifetime(client, token, lifetime)
        assert answer.status_code == 400, lifetime
        assert answer.get_json() == {"message": MAX_DAY}
    assert account(client, token)["file_lifetime_seconds"] is None
    # Exactly the limit is taken; a second more still is not, and changes nothing.
    answer = set_lifetime(client, token, 86400)
    assert answer.status_code == 200
    assert answer.get_json()["file_lifetime_seconds"] == DAY
    answer = set_lifetime(client, token, 86401)
    assert answer.status_code == 400
    assert answer.get_json() == {"message": MAX_DAY}
    assert account(client, token)["file_lifetime_seconds"] == DAY


def test_the_policy_bounds_a_change_of_expiry(app, client, token, admin):
    set_policies(client, admin, max_file_seconds=DAY)
    since = utcnow()
    body = upload_for(client, token, None)
    assert_expires_in(body["expires_at"], DAY, since)
    file_id = body["id"]
    before = expiry_of(app, file_id)
    two_days = (utcnow() + timedelta(days=2)).isoformat()
    for change in (
        {"expires_at": None},
        {"expires_in": "never"},
        {"expires_in": "2d"},
        {"expires_at": two_days},
    ):
        answer = patch(client, token, file_id, change)
        assert answer.status_code == 400, change
        assert answer.get_json() == {"message": MAX_DAY}
        assert expiry_of(app, file_id) == before, change
    form = client.post(
        f"/files/{file_id}/expiry?token={token}",
        data={"expires_in": "never"},
        headers=HTML,
    )
    assert form.status_code == 400
    assert MAX_DAY in form.get_data(as_text=True)
    assert expiry_of(app, file_id) == before
    since = utcnow()
    answer = patch(client, token, file_id, {"expires_in": "12h"})
    assert answer.status_code == 200, answer.get_json()
    assert_expires_in(answer.get_json()["expires_at"], 12 * HOUR, since)
    assert expiry_of(app, file_id) == at(answer.get_json()["expires_at"])


def test_the_policy_counts_from_the_upload_not_from_now(app, client, token, admin):
    set_policies(client, admin, max_file_seconds=DAY)
    file_id = upload_for(client, token, "1h")["id"]
    with app.app_context():
        db.session.execute(
            db.update(StoredFile)
            .where(StoredFile.id == file_id)
            .values(created_at=utcnow() - timedelta(hours=20))
        )
        db.session.commit()
        db.session.remove()
    before = expiry_of(app, file_id)
    # Uploaded 20 hours ago: 4 hours are left of its day.
    for change in (
        {"expires_in": "1d"},
        {"expires_in": "5h"},
        {"expires_at": (utcnow() + timedelta(hours=5)).isoformat()},
    ):
        answer = patch(client, token, file_id, change)
        assert answer.status_code == 400, change
        assert answer.get_json() == {"message": MAX_DAY}
    assert expiry_of(app, file_id) == before
    since = utcnow()
    answer = patch(client, token, file_id, {"expires_in": "3h"})
    assert answer.status_code == 200, answer.get_json()
    assert_expires_in(answer.get_json()["expires_at"], 3 * HOUR, since)
    when = (utcnow() + timedelta(hours=3, minutes=30)).replace(microsecond=0)
    answer = patch(client, token, file_id, {"expires_at": when.isoformat()})
    assert answer.status_code == 200, answer.get_json()
    assert at(answer.get_json()["expires_at"]) == when
    assert expiry_of(app, file_id) == when


def test_the_pages_offer_only_lifetimes_within_the_policy(client, token, admin):
    file_id = upload_for(client, token, None)["id"]
    set_policies(client, admin, max_file_seconds=7 * DAY)
    week = [("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days")]
    index = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert select_options(index, "expires-in") == [
        ("", "Your default: for 7 days"),
        *week,
    ]
    preview = client.get(f"/files/{file_id}/preview?token={token}", headers=HTML)
    assert select_options(preview.get_data(as_text=True), "expires-in") == week
    page = client.get(f"/account?token={token}", headers=HTML).get_data(as_text=True)
    assert select_options(page, "lifetime") == week
    assert '<option value="7d" selected>7 days</option>' in page
    # A limit under a day: the page offers the hour, and the account's
    # default as the policy clips it (which its form may send back).
    set_policies(client, admin, max_file_seconds=3 * HOUR)
    index = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert select_options(index, "expires-in") == [
        ("", "Your default: for 3 hours"),
        ("1h", "1 hour"),
    ]
    preview = client.get(f"/files/{file_id}/preview?token={token}", headers=HTML)
    assert select_options(preview.get_data(as_text=True), "expires-in") == [
        ("1h", "1 hour")
    ]
    page = client.get(f"/account?token={token}", headers=HTML).get_data(as_text=True)
    assert select_options(page, "lifetime") == [
        ("10800", "For 3 hours"),
        ("1h", "1 hour"),
    ]
    assert '<option value="10800" selected>For 3 hours</option>' in page
    answer = client.post(
        f"/account/file-lifetime?token={token}",
        data={"lifetime": "10800"},
        headers=HTML,
    )
    assert answer.status_code == 303
    assert account(client, token)["file_lifetime_seconds"] == 3 * HOUR


def policies_page_form(client, admin) -> dict[str, str]:
    """The fields the policies page's form sends back as it stands."""
    page = client.get(f"/admin/policies?token={admin}", headers=HTML)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    form = re.search(r'<form id="policies-form".*?</form>', text, re.S)
    assert form, text
    fields = {}
    for tag in re.findall(r"<input[^>]*>", form[0]):
        name = re.search(r'\sname="([^"]*)"', tag)
        if name is None:
            continue
        if 'type="checkbox"' in tag:
            if re.search(r"\schecked\b", tag):
                fields[name[1]] = "on"
        else:
            value = re.search(r'\svalue="([^"]*)"', tag)
            fields[name[1]] = value[1] if value else ""
    return fields


def post_policies_page(client, admin, fields: dict[str, str]):
    """The policies page's form, posted by a browser; the answer."""
    return client.post(f"/admin/policies?token={admin}", data=fields, headers=HTML)


def max_file_seconds_now(client, admin) -> int | None:
    """The policy in force, as the API gives it."""
    answer = client.get("/admin/policies", headers=bearer(admin))
    assert answer.status_code == 200
    return answer.get_json()["max_file_seconds"]


def test_the_policies_page_sets_the_longest_lifetime_in_days(client, admin):
    fields = policies_page_form(client, admin)
    assert fields["max_file_days"] == ""
    answer = post_policies_page(client, admin, {**fields, "max_file_days": "2"})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert max_file_seconds_now(client, admin) == 2 * DAY
    assert policies_page_form(client, admin)["max_file_days"] == "2"
    # A limit the API set, not whole days: the page shows it rounded down,
    # and sent back unchanged it stays what it was.
    set_policies(client, admin, max_file_seconds=36 * HOUR)
    fields = policies_page_form(client, admin)
    assert fields["max_file_days"] == "1"
    answer = post_policies_page(client, admin, fields)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert max_file_seconds_now(client, admin) == 36 * HOUR
    # Changed on the page, it is whole days again.
    answer = post_policies_page(client, admin, {**fields, "max_file_days": "3"})
    assert answer.status_code == 303
    assert max_file_seconds_now(client, admin) == 3 * DAY
    for bad in ("0", "3651", "1.5", "two"):
        answer = post_policies_page(client, admin, {**fields, "max_file_days": bad})
        assert answer.status_code == 400, bad
        assert "max_file_days must be a whole number of days, 1 to 3650" in (
            answer.get_data(as_text=True)
        )
        assert max_file_seconds_now(client, admin) == 3 * DAY, bad
    # Empty: no limit.
    answer = post_policies_page(client, admin, {**fields, "max_file_days": ""})
    assert answer.status_code == 303
    assert max_file_seconds_now(client, admin) is None
    assert policies_page_form(client, admin)["max_file_days"] == ""


def test_the_policies_page_saves_with_a_limit_under_a_day(client, admin):
    set_policies(client, admin, max_file_seconds=3 * HOUR)
    fields = policies_page_form(client, admin)
    assert fields["max_file_days"] == "0"
    answer = post_policies_page(client, admin, fields)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert urlsplit(answer.headers["Location"]).path == "/admin/policies"
    assert max_file_seconds_now(client, admin) == 3 * HOUR
    # The other policies sent back are unchanged too.
    assert policies_page_form(client, admin) == fields


# --- 5. changing a file's expiry ----------------------------------------------

NEITHER = {"message": "Send expires_at or expires_in (one of the two)"}
NOT_AHEAD = (
    "expires_at must be in the future, within 3650 days (to remove the file "
    "now, delete it)"
)


def test_patch_sets_a_lifetime_from_now(app, client, token):
    file_id = upload_for(client, token, None)["id"]
    since = utcnow()
    answer = patch(client, token, file_id, {"expires_in": "1d"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert_expires_in(body["expires_at"], DAY, since)
    assert metadata(client, token, file_id).get_json() == body
    assert expiry_of(app, file_id) == at(body["expires_at"])
    since = utcnow()
    answer = patch(client, token, file_id, {"expires_in": 7200})
    assert answer.status_code == 200, answer.get_json()
    assert_expires_in(answer.get_json()["expires_at"], 2 * HOUR, since)
    assert expiry_of(app, file_id) == at(answer.get_json()["expires_at"])
    answer = patch(client, token, file_id, {"expires_in": "never"})
    assert answer.status_code == 200
    assert answer.get_json()["expires_at"] is None
    assert expiry_of(app, file_id) is None


def test_patch_sets_a_time_or_none(app, client, token):
    file_id = upload_for(client, token, "1h")["id"]
    when = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    offset = timezone(timedelta(hours=2))
    text = when.astimezone(offset).isoformat()
    assert text.endswith("+02:00")
    answer = patch(client, token, file_id, {"expires_at": text})
    assert answer.status_code == 200, answer.get_json()
    assert at(answer.get_json()["expires_at"]) == when
    assert expiry_of(app, file_id) == when
    assert at(expiry_shown(client, token, file_id)) == when
    # Without an offset: UTC.
    later = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    naive = later.replace(tzinfo=None).isoformat()
    answer = patch(client, token, file_id, {"expires_at": naive})
    assert answer.status_code == 200, answer.get_json()
    assert at(answer.get_json()["expires_at"]) == later
    assert expiry_of(app, file_id) == later
    # null: kept until deleted.
    answer = patch(client, token, file_id, {"expires_at": None})
    assert answer.status_code == 200
    assert answer.get_json()["expires_at"] is None
    assert expiry_of(app, file_id) is None
    assert expiry_shown(client, token, file_id) is None


def test_patch_refuses_what_it_cannot_do(app, client, token):
    file_id = upload_for(client, token, "1h")["id"]
    before = expiry_of(app, file_id)
    past = (utcnow() - timedelta(hours=1)).isoformat()
    too_far = (utcnow() + timedelta(days=3651)).isoformat()
    for body, message in [
        ({}, NEITHER["message"]),
        ({"expires_at": None, "expires_in": "1d"}, NEITHER["message"]),
        ({"description": "not an expiry"}, NEITHER["message"]),
        ({"expires_in": "abc"}, LIFETIME_FORMAT),
        ({"expires_in": "0"}, LIFETIME_FORMAT),
        ({"expires_in": "3651d"}, LIFETIME_FORMAT),
        ({"expires_in": ""}, "expires_in: " + LIFETIME_ERROR),
        ({"expires_in": None}, "expires_in: Field may not be null."),
        ({"expires_at": "not a date"}, "expires_at: Not a valid datetime."),
        ({"expires_at": past}, NOT_AHEAD),
        ({"expires_at": too_far}, NOT_AHEAD),
    ]:
        answer = patch(client, token, file_id, body)
        assert answer.status_code == 400, body
        assert answer.get_json() == {"message": message}, body
        assert expiry_of(app, file_id) == before, body
    for data, message in [
        (b"", "The body is not valid JSON: "),
        (b"[1, 2]", "The body must be a JSON object"),
        (b'"1d"', "The body must be a JSON object"),
    ]:
        answer = client.patch(
            f"/files/{file_id}",
            data=data,
            content_type="application/json",
            headers=bearer(token),
        )
        assert answer.status_code == 400, data
        assert answer.get_json()["message"].startswith(message), data
    assert expiry_of(app, file_id) == before
    assert metadata(client, token, file_id).status_code == 200


def test_patch_with_neither_says_so_in_plain_words(client, token):
    file_id = upload_for(client, token, None)["id"]
    for body in ({}, {"expires_at": None, "expires_in": "never"}):
        answer = patch(client, token, file_id, body)
        assert answer.status_code == 400, body
        assert answer.get_json() == NEITHER
    form = client.post(f"/files/{file_id}/expiry", data={}, headers=bearer(token))
    assert form.status_code == 400
    assert form.get_json() == NEITHER
    page = client.post(f"/files/{file_id}/expiry?token={token}", data={}, headers=HTML)
    assert page.status_code == 400
    text = page.get_data(as_text=True)
    assert "Send expires_at or expires_in (one of the two)" in text
    assert "_schema" not in text


def test_patch_to_a_moment_ago_is_refused(app, client, token):
    file_id = upload_for(client, token, "1h")["id"]
    before = expiry_of(app, file_id)
    for moment in (utcnow() - timedelta(seconds=1), utcnow()):
        answer = patch(client, token, file_id, {"expires_at": moment.isoformat()})
        assert answer.status_code == 400
        assert answer.get_json() == {"message": NOT_AHEAD}
    assert expiry_of(app, file_id) == before
    # Still there, as it was.
    assert metadata(client, token, file_id).status_code == 200
    assert listing(client, token)["total"] == 1


def test_patch_of_someone_elses_file_is_not_found(app, client, auth, token):
    auth.create_user("bob")
    bobs = upload_for(client, auth.token("bob"), None)["id"]
    for body in ({"expires_in": "1d"}, {"expires_at": None}):
        answer = patch(client, token, bobs, body)
        assert answer.status_code == 404
        assert answer.get_json() == NOT_FOUND
    assert patch(client, token, 99999, {"expires_in": "1d"}).status_code == 404
    form = client.post(
        f"/files/{bobs}/expiry?token={token}", data={"expires_in": "1h"}, headers=HTML
    )
    assert form.status_code == 404
    assert expiry_of(app, bobs) is None


def test_patch_needs_the_files_write_scope(app, client, token):
    file_id = upload_for(client, token, None)["id"]
    made = client.post(
        "/tokens",
        json={"name": "reader", "scopes": ["files:read"]},
        headers=bearer(token),
    )
    assert made.status_code == 201, made.get_json()
    reader = made.get_json()["token"]
    answer = patch(client, reader, file_id, {"expires_in": "1d"})
    assert answer.status_code == 403
    assert answer.get_json() == {"message": "Token lacks the files:write scope"}
    form = client.post(
        f"/files/{file_id}/expiry", data={"expires_in": "1d"}, headers=bearer(reader)
    )
    assert form.status_code == 403
    assert expiry_of(app, file_id) is None
    # Its reading still works.
    assert metadata(client, reader, file_id).status_code == 200


def test_the_files_page_changes_its_expiry(client, token):
    file_id = upload_for(client, token, None, name="page.txt")["id"]
    page = client.get(f"/files/{file_id}/preview?token={token}", headers=HTML)
    assert "Kept until you delete it." in page.get_data(as_text=True)
    answer = client.post(
        f"/files/{file_id}/expiry?token={token}",
        data={"expires_in": "1d"},
        headers=HTML,
    )
    assert answer.status_code == 303
    assert urlsplit(answer.headers["Location"]).path == f"/files/{file_id}/preview"
    expires_at = at(metadata(client, token, file_id).get_json()["expires_at"])
    when = expires_at.strftime("%Y-%m-%d %H:%M")
    page = client.get(f"/files/{file_id}/preview?token={token}", headers=HTML)
    text = page.get_data(as_text=True)
    assert f"page.txt now expires on {when} UTC" in text
    assert (
        f'Expires <time datetime="{expires_at.isoformat()}">{when} UTC</time>' in text
    )
    assert "Kept until you delete it." not in text
    answer = client.post(
        f"/files/{file_id}/expiry?token={token}",
        data={"expires_in": "never"},
        headers=HTML,
    )
    assert answer.status_code == 303
    text = client.get(f"/files/{file_id}/preview?token={token}", headers=HTML).get_data(
        as_text=True
    )
    assert "page.txt is kept until you delete it" in text
    assert "Kept until you delete it." in text and "Expires <time" not in text
    assert metadata(client, token, file_id).get_json()["expires_at"] is None


# --- 6. an expired file is gone at once ----------------------------------------


def test_an_expired_file_disappears_from_everything_its_owner_sees(app, client, token):
    gone = upload_for(client, token, "1h", b"gone bytes", "report-old.txt")["id"]
    kept = upload_for(client, token, None, b"kept", "report-new.txt")["id"]
    expire(app, gone)
    page = listing(client, token)
    assert [item["id"] for item in page["items"]] == [kept]
    assert page["total"] == 1
    found = listing(client, token, q="report")
    assert [item["id"] for item in found["items"]] == [kept]
    assert found["total"] == 1
    for path in (
        f"/files/{gone}",
        f"/files/{gone}/download",
        f"/files/{gone}/preview",
    ):
        answer = client.get(path, headers=bearer(token))
        assert answer.status_code == 404, path
        assert answer.get_json() == NOT_FOUND
    # Nothing more can be done with it either.
    assert patch(client, token, gone, {"expires_in": "1d"}).status_code == 404
    share = client.post(f"/files/{gone}/shares", json={}, headers=bearer(token))
    assert share.status_code == 404
    html = client.get(f"/?token={token}", headers=HTML).get_data(as_text=True)
    assert "report-new.txt" in html and "report-old.txt" not in html
    # Still there until `files gc`.
    assert rows_of(app, gone) == (1, 1)


def test_a_file_expires_at_its_time_not_after(app, client, token):
    file_id = upload_for(client, token, "1h")["id"]
    expire(app, file_id, seconds_ago=-60)
    assert metadata(client, token, file_id).status_code == 200
    assert listing(client, token)["total"] == 1
    expire(app, file_id, seconds_ago=0)
    assert metadata(client, token, file_id).status_code == 404
    assert listing(client, token)["total"] == 0


@WITH_QUOTA
def test_an_expired_file_stops_counting_against_the_quota(app, client, token):
    first = upload_for(client, token, "1h", b"a" * 6000, "first.bin")["id"]
    assert account(client, token)["used_bytes"] == 6000
    refused = multipart_upload(client, token, b"b" * 6000, "second.bin")
    assert refused.status_code == 413
    expire(app, first)
    assert account(client, token)["used_bytes"] == 0
    second = upload_for(client, token, None, b"b" * 6000, "second.bin")
    assert account(client, token)["used_bytes"] == 6000
    assert [item["id"] for item in listing(client, token)["items"]] == [second["id"]]


def test_the_admin_list_and_users_list_drop_an_expired_files_bytes(
    app, client, auth, runner, token
):
    admin = admin_token(auth, runner)
    gone = upload_for(client, token, "1h", b"x" * 300)["id"]
    upload_for(client, token, None, b"y" * 200)
    expire(app, gone)
    users = client.get("/admin/users", headers=bearer(admin)).get_json()["items"]
    [alice] = [row for row in users if row["username"] == "alice"]
    assert alice["used_bytes"] == 200
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0, result.output
    [line] = [row for row in result.output.splitlines() if row.startswith("alice\t")]
    assert "\t1 files\t" in line and "200 B used" in line


def test_the_admin_lists_file_count_drops_an_expired_file(
    app, client, auth, runner, token
):
    admin = admin_token(auth, runner)
    gone = upload_for(client, token, "1h", b"x" * 300)["id"]
    upload_for(client, token, None, b"y" * 200)

    def alices_row() -> dict:
        users = client.get("/admin/users", headers=bearer(admin)).get_json()["items"]
        [alice] = [row for row in users if row["username"] == "alice"]
        return alice

    assert (alices_row()["files"], alices_row()["used_bytes"]) == (2, 500)
    expire(app, gone)
    alice = alices_row()
    assert (alice["files"], alice["used_bytes"]) == (1, 200)
    one = client.get(f"/admin/users/{alice['id']}", headers=bearer(admin))
    assert one.status_code == 200
    assert one.get_json() == alice
    # The stored count still holds it until `files gc`.
    assert stored_file_count(app) == 2


def test_a_link_to_an_expired_file_is_gone(app, client, token):
    file_id = upload_for(client, token, "1h", b"shared", "shared.txt")["id"]
    path = make_share(client, token, file_id)
    assert client.get(path).get_json()["filename"] == "shared.txt"
    expire(app, file_id)
    for target in ("", "/download", "/files/1"):
        answer = client.get(path + target)
        assert answer.status_code == 410, target
        assert answer.get_json() == {"message": FILE_EXPIRED}
    page = client.get(path, headers=HTML)
    assert page.status_code == 410
    assert page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert FILE_EXPIRED in text and "shared.txt" not in text


def test_the_admin_does_not_see_a_link_to_an_expired_file_as_active(
    app, client, auth, runner, token
):
    admin = admin_token(auth, runner)
    file_id = upload_for(client, token, "1h", b"shared", "shared.txt")["id"]
    make_share(client, token, file_id)

    def the_link() -> dict:
        answer = client.get("/admin/shared", headers=bearer(admin))
        assert answer.status_code == 200
        [link] = answer.get_json()["links"]
        return link

    assert (the_link()["status"], the_link()["title"]) == ("active", "shared.txt")
    expire(app, file_id)
    link = the_link()
    assert link["status"] != "active"
    assert (link["status"], link["title"]) == ("emptied", "(no file)")


def test_a_link_to_several_files_drops_expired_ones(app, client, token):
    first = upload_for(client, token, "1h", b"first", "first.txt")["id"]
    second = upload_for(client, token, "1h", b"second", "second.txt")["id"]
    path = make_several_link(client, token, [first, second])
    expire(app, first)
    details = client.get(path).get_json()
    assert [(item["position"], item["filename"]) for item in details["files"]] == [
        (2, "second.txt")
    ]
    page = client.get(path, headers=HTML).get_data(as_text=True)
    assert "second.txt" in page and "first.txt" not in page
    assert zip_names(client.get(path + "/download").data) == {
        "second.txt": hashlib.sha256(b"second").hexdigest()
    }
    missing = client.get(path + "/files/1")
    assert missing.status_code == 404
    assert missing.get_json() == {"message": "This link has no such file"}
    assert client.get(path + "/files/2").data == b"second"
    expire(app, second)
    for target in ("", "/download", "/files/2"):
        answer = client.get(path + target)
        assert answer.status_code == 410, target
        assert answer.get_json() == {"message": EMPTIED}


def test_an_upload_requests_files_drop_an_expired_one(app, client, token):
    assert set_lifetime(client, token, "1d").status_code == 200
    link = make_request(client, token)
    guest = app.test_client()
    since = utcnow()
    first = guest_tus(guest, link, b"scan one", "one.pdf", expires_in="never")
    sent = guest_form(guest, link, b"scan two", "two.txt", expires_in="never")
    assert sent.status_code == 201, sent.get_json()
    # A guest asks nothing: the owner's default applies.
    files = client.get("/requests", headers=bearer(token)).get_json()["items"][0][
        "files"
    ]
    assert [item["filename"] for item in files] == ["two.txt", "one.pdf"]
    assert [item["id"] for item in files] == [files[0]["id"], first]
    for item in files:
        shown = metadata(client, token, item["id"]).get_json()
        assert_expires_in(shown["expires_at"], DAY, since)
    expire(app, first)
    files = client.get("/requests", headers=bearer(token)).get_json()["items"][0][
        "files"
    ]
    assert [item["filename"] for item in files] == ["two.txt"]


def test_an_expired_file_frees_its_place_in_a_request_capped_by_files(
    app, client, token
):
    made = client.post(
        "/requests", json={"title": "Scans", "max_files": 1}, headers=bearer(token)
    )
    assert made.status_code == 201, made.get_json()
    link = made.get_json()["url"].removeprefix("http://localhost")
    guest = app.test_client()
    first = guest_tus(guest, link, b"scan one", "one.pdf")
    listed = client.get("/requests", headers=bearer(token)).get_json()["items"][0]
    assert listed["status"] == "full"
    expire(app, first)
    listed = client.get("/requests", headers=bearer(token)).get_json()["items"][0]
    assert listed["files"] == []
    assert listed["status"] == "active"
    assert guest_form(guest, link, b"scan two", "two.txt").status_code == 201


# --- 7. `files gc` ----------------------------------------------------------------


def test_files_gc_removes_expired_files_and_recounts(app, client, auth, runner, token):
    auth.create_user("bob")
    bob = auth.token("bob")
    gone = upload_for(client, token, "1h", b"z" * 9000, "gone.bin")["id"]
    later = upload_for(client, token, "1h", b"later", "later.bin")["id"]
    never = upload_for(client, token, None, b"never", "never.bin")["id"]
    bobs_gone = upload_for(client, bob, "1d", b"bob", "bob.bin")["id"]
    expire(app, gone, bobs_gone)
    assert stored_file_count(app) == 3 and stored_file_count(app, "bob") == 1
    assert rows_of(app, gone)[0] == 1 and rows_of(app, gone)[1] >= 1
    result = runner.invoke(args=["files", "gc"])
    assert result.exit_code == 0, result.output
    assert "Removed 2 expired files" in result.output
    assert rows_of(app, gone) == (0, 0)
    assert rows_of(app, bobs_gone) == (0, 0)
    assert rows_of(app, later) == (1, 1)
    assert rows_of(app, never) == (1, 1)
    assert stored_file_count(app) == 2 and stored_file_count(app, "bob") == 0
    assert row_counts(app) == (2, 2)
    assert listing(client, token)["total"] == 2
    again = runner.invoke(args=["files", "gc"])
    assert "Removed 0 expired files" in again.output
    assert row_counts(app) == (2, 2)


# --- 8. the listing's total -----------------------------------------------------


def test_the_total_leaves_expired_files_out_on_every_page(app, client, token):
    ids = [upload_for(client, token, "1h", bytes([n]) * 5)["id"] for n in range(3)]
    expire(app, ids[1])
    first = listing(client, token)
    assert [item["id"] for item in first["items"]] == [ids[2], ids[0]]
    assert first["total"] == 2
    small = listing(client, token, per_page=1, page=2)
    assert [item["id"] for item in small["items"]] == [ids[0]]
    assert small["total"] == 2
    past = listing(client, token, page=5)
    assert (past["items"], past["total"], past["page"]) == ([], 2, 5)
    assert listing(client, token, sort="name")["total"] == 2
    assert stored_file_count(app) == 3
