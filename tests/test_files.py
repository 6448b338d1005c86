"""The files API: listing, metadata, downloads (ranges, conditionals), deletion."""

import hashlib
import random
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import collapse_rfc2231_value, format_datetime
from urllib.parse import unquote, urlsplit

import pytest
import requests
from sqlalchemy import event
from test_server import multipart_pieces, stream_upload
from test_upload import METADATA_FIELDS, end, part, row_counts
from werkzeug.http import parse_options_header

import storage
from harness.server import proc_status
from helpers import bearer, sign_in
from models import FileChunk, StoredFile, User, db

MIB = 1024 * 1024
CHUNK = 4096
BIG = 3 * CHUNK + 5
# Streaming 1 MiB chunks grows a worker by a few MiB; holding a 30 MiB download in
# memory grows it by about 60 MiB, which a 64 MiB bound would let through.
MAX_DOWNLOAD_GROWTH = 16 * MIB
SMALL_CHUNKS = pytest.mark.parametrize(
    "app_settings", [{"CHUNK_SIZE": CHUNK}], ids=["chunk4096"]
)
NOT_FOUND = {"message": "File not found"}
# RFC 6266 attachment with a quoted ASCII filename and an optional RFC 8187 filename*.
WELL_FORMED_DISPOSITION = re.compile(
    r'attachment; filename="(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"'
    r"(?:; filename\*=UTF-8''(?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})+)?"
)


# --- helpers -----------------------------------------------------------------


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Reproducible random content of ``size`` bytes."""
    return random.Random(seed).randbytes(size)


def upload(
    client,
    token,
    content=b"hello",
    filename="hello.bin",
    content_type=None,
    before=(),
    after=(),
    headers=None,
):
    """POST a hand-built multipart upload, text fields before/after the file."""
    fields = [part(name, value.encode()) for name, value in before]
    fields.append(part("inputFile", content, filename, content_type))
    fields += [part(name, value.encode()) for name, value in after]
    return client.post(
        "/upload",
        data=b"".join(fields) + end(),
        content_type="multipart/form-data; boundary=XyZ",
        headers=bearer(token, **(headers or {})),
    )


def uploaded(client, token, content=b"hello", filename="hello.bin", **kw) -> dict:
    """Upload a file that must be accepted; its metadata (without the message)."""
    response = upload(client, token, content, filename, **kw)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    del body["message"]
    return body


def user_id(app, username="alice") -> int:
    """The id of an existing user."""
    with app.app_context():
        return db.session.execute(
            db.select(User.id).filter_by(username=username)
        ).scalar_one()


def insert_file(
    app, owner_id, content=b"direct", *, complete=True, created_at=None
) -> int:
    """Add a file and its 4096-byte chunk rows straight into the database; its id."""
    with app.app_context():
        stored_file = StoredFile(
            owner_id=owner_id,
            filename="direct.bin",
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            chunk_size=CHUNK,
            complete=complete,
            created_at=created_at or datetime.now(UTC),
        )
        db.session.add(stored_file)
        db.session.flush()
        for seq, start in enumerate(range(0, len(content), CHUNK)):
            db.session.add(
                FileChunk(
                    file_id=stored_file.id,
                    seq=seq,
                    data=content[start : start + CHUNK],
                )
            )
        db.session.commit()
        return stored_file.id


def rows_of(app, file_id) -> tuple[int, int]:
    """How many stored_file rows and file_chunk rows exist for one file id."""
    with app.app_context():
        files = db.session.execute(
            db.select(db.func.count()).select_from(StoredFile).filter_by(id=file_id)
        ).scalar()
        chunks = db.session.execute(
            db.select(db.func.count()).select_from(FileChunk).filter_by(file_id=file_id)
        ).scalar()
        return files, chunks


seen_parameters: list[list] = []


@contextmanager
def recorded_statements(app):
    """Collect every SQL statement the app's engine sends inside the block.

    The parameters of each land in ``seen_parameters``, in the same order.
    """
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)
        values = parameters.values() if isinstance(parameters, dict) else parameters
        seen_parameters.append(list(values or ()))

    with app.app_context():
        engine = db.engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", record)


def download(client, token, file_id, **headers):
    """GET a file's bytes with extra request headers; the response."""
    return client.get(f"/files/{file_id}/download", headers=bearer(token, **headers))


def disposition_of(client, token, filename) -> tuple[str, dict]:
    """Upload a file under a raw multipart filename; (download's header, metadata)."""
    metadata = uploaded(client, token, b"x", filename)
    response = download(client, token, metadata["id"])
    assert response.status_code == 200
    return response.headers["Content-Disposition"], metadata


def plain_filename(header: str) -> str:
    """The quoted ASCII ``filename`` parameter, as the email parser reads it."""
    message = Message()
    message["Content-Disposition"] = header
    [value] = [
        value
        for key, value in message.get_params(header="content-disposition")[1:]
        if key == "filename" and isinstance(value, str)
    ]
    return value


def extended_filename(header: str) -> str | None:
    """The raw RFC 8187 ``filename*`` value, or None when there is none."""
    match = re.search(r"filename\*=([^;\s]+)", header)
    return match.group(1) if match else None


def seeded_slice(size: int, seed: int, start: int, stop: int) -> bytes:
    """Bytes ``start:stop`` of the file test_server's stream_upload sends."""
    pieces = multipart_pieces(size, seed, hashlib.sha256())
    next(pieces)  # the multipart head
    content = bytearray()
    offset = 0
    for piece, _ in pieces:
        if offset >= stop:
            break
        content += piece[max(start - offset, 0) : max(stop - offset, 0)]
        offset += len(piece)
    return bytes(content)


@pytest.fixture
def big_file(client, token) -> tuple[int, bytes]:
    """Alice's file of three chunks and five bytes (with CHUNK_SIZE 4096)."""
    content = random_bytes(BIG, seed=7)
    return uploaded(client, token, content, "big.bin")["id"], content


# --- authentication ----------------------------------------------------------


ROUTES = [
    ("GET", "/files"),
    ("GET", "/files/{id}"),
    ("GET", "/files/{id}/download"),
    ("DELETE", "/files/{id}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_routes_without_a_token_are_401(app, client, token, method, path):
    file_id = uploaded(client, token)["id"]
    response = client.open(path.format(id=file_id), method=method)
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token missing"}
    assert rows_of(app, file_id) == (1, 1)


@pytest.mark.parametrize("via", ["query", "bearer"])
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [(method, path, 204 if method == "DELETE" else 200) for method, path in ROUTES],
)
def test_routes_accept_a_query_or_bearer_token(
    client, token, method, path, status, via
):
    file_id = uploaded(client, token)["id"]
    if via == "query":
        kw = {"query_string": {"token": token}}
    else:
        kw = {"headers": bearer(token)}
    response = client.open(path.format(id=file_id), method=method, **kw)
    assert response.status_code == status


# --- GET /files ----------------------------------------------------------------


def test_listing_of_a_new_user_is_empty(client, token):
    response = client.get("/files", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "page": 1, "per_page": 50, "total": 0}


def test_listing_shows_only_the_callers_complete_files(app, client, auth, token):
    auth.create_user("bob")
    mine = {uploaded(client, token, b"a")["id"], uploaded(client, token, b"b")["id"]}
    uploaded(client, auth.token("bob"), b"bob's")
    insert_file(app, user_id(app), b"unfinished", complete=False)
    body = client.get("/files", headers=bearer(token)).get_json()
    assert {item["id"] for item in body["items"]} == mine
    assert body["total"] == 2


def test_listing_items_are_the_files_metadata(client, token):
    metadata = uploaded(
        client, token, b"listed", "listed.txt", after=[("description", "d")]
    )
    [item] = client.get("/files", headers=bearer(token)).get_json()["items"]
    assert set(item) == METADATA_FIELDS
    assert item == metadata


def test_listing_is_newest_first_with_ties_by_id_descending(app, client, token):
    owner = user_id(app)
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    oldest = insert_file(app, owner, created_at=t0 - timedelta(hours=1))
    middle = insert_file(app, owner, created_at=t0)
    tie_low = insert_file(app, owner, created_at=t0 + timedelta(hours=1))
    tie_high = insert_file(app, owner, created_at=t0 + timedelta(hours=1))
    items = client.get("/files", headers=bearer(token)).get_json()["items"]
    assert [item["id"] for item in items] == [tie_high, tie_low, middle, oldest]


@pytest.mark.parametrize(
    ("page", "expected"), [(1, slice(0, 2)), (2, slice(2, 4)), (3, slice(4, 5))]
)
def test_listing_is_paginated(app, client, token, page, expected):
    owner = user_id(app)
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    ids = [
        insert_file(app, owner, created_at=t0 + timedelta(minutes=i)) for i in range(5)
    ]
    newest_first = ids[::-1]
    response = client.get(f"/files?page={page}&per_page=2", headers=bearer(token))
    assert response.status_code == 200
    body = response.get_json()
    assert [item["id"] for item in body["items"]] == newest_first[expected]
    assert (body["page"], body["per_page"], body["total"]) == (page, 2, 5)


def test_page_past_the_end_is_empty_with_the_total(client, token):
    for content in (b"1", b"2", b"3"):
        uploaded(client, token, content)
    response = client.get("/files?page=3&per_page=2", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "page": 3, "per_page": 2, "total": 3}


def test_per_page_of_200_is_accepted(client, token):
    uploaded(client, token)
    response = client.get("/files?per_page=200", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["per_page"] == 200


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("per_page=0", "per_page"),
        ("per_page=201", "per_page"),
        ("per_page=x", "per_page"),
    ],
)
def test_bad_paging_values_are_400_naming_the_parameter(client, token, query, name):
    response = client.get(f"/files?{query}", headers=bearer(token))
    assert response.status_code == 400
    body = response.get_json()
    assert set(body) == {"message"}
    # \b keeps "page" from matching inside "per_page".
    assert re.search(rf"\b{name}\b", body["message"]), body["message"]


def test_listing_reads_no_file_bytes(app, client, token):
    for size in (1, 5000):
        uploaded(client, token, random_bytes(size))
    with recorded_statements(app) as statements:
        response = client.get("/files", headers=bearer(token))
        assert response.status_code == 200
    assert any("stored_file" in statement for statement in statements)
    assert not [s for s in statements if "file_chunk" in s.lower()]


def test_a_listing_page_and_its_total_take_one_query(app, client, token):
    for number in range(3):
        uploaded(client, token, f"file {number}".encode())
    with recorded_statements(app) as statements:
        response = client.get("/files?per_page=2", headers=bearer(token))
        assert response.status_code == 200
    assert response.get_json()["total"] == 3
    # One for the token (its user and the revocation list), one for the page.
    assert len(statements) == 2, statements
    assert "revoked_token" in statements[0]
    assert "count(*)" in statements[1].lower()


# --- GET /files/<id> -----------------------------------------------------------


def test_metadata_is_what_the_upload_answered(client, token):
    metadata = uploaded(client, token, b"meta", "m.pdf", content_type="application/pdf")
    response = client.get(f"/files/{metadata['id']}", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == metadata


def test_upload_location_points_at_the_metadata(client, token):
    response = upload(client, token)
    assert response.status_code == 201
    file_id = response.get_json()["id"]
    location = response.headers["Location"]
    assert urlsplit(location).path == f"/files/{file_id}"
    assert client.get(location, headers=bearer(token)).get_json()["id"] == file_id


# --- GET /files/<id>/download ----------------------------------------------------


@SMALL_CHUNKS
@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK, CHUNK + 1, BIG],
    ids=["empty", "one-byte", "one-chunk", "chunk-plus-one", "multi-chunk"],
)
def test_download_returns_the_exact_bytes(client, token, size):
    content = random_bytes(size, seed=size)
    metadata = uploaded(client, token, content, "data.bin")
    response = download(client, token, metadata["id"])
    assert response.status_code == 200
    data = response.get_data()
    assert hashlib.sha256(data).hexdigest() == metadata["sha256"]
    assert data == content


@SMALL_CHUNKS
def test_download_content_length_is_the_size(client, big_file, token):
    file_id, content = big_file
    response = download(client, token, file_id)
    assert response.headers["Content-Length"] == str(len(content))
    assert len(response.get_data()) == len(content)


@SMALL_CHUNKS
@pytest.mark.parametrize(
    ("lost", "reason"),
    [(1, "chunk 1 is missing"), (3, "the rows stopped before chunk 3")],
    ids=["middle", "last"],
)
def test_a_lost_chunk_cuts_the_download_short_and_is_logged(
    app, client, big_file, token, caplog, lost, reason
):
    file_id, content = big_file
    with app.app_context():
        db.session.execute(db.delete(FileChunk).filter_by(file_id=file_id, seq=lost))
        db.session.commit()
    response = download(client, token, file_id)
    assert response.status_code == 200
    with pytest.raises(storage.MissingChunkError):
        response.get_data()
    assert f"Download of file {file_id} cut short: {reason}" in caplog.text


@pytest.mark.parametrize(
    ("declared", "filename", "served"),
    [
        ("image/png", "picture", "image/png"),
        (None, "mystery.unknownext", "application/octet-stream"),
        # No charset is added: Lockbox does not know the text's encoding.
        ("text/plain", "latin1.txt", "text/plain"),
    ],
    ids=["declared", "unknown", "text"],
)
def test_download_content_type_is_the_stored_one(
    client, token, declared, filename, served
):
    metadata = uploaded(client, token, b"\x89PNG", filename, content_type=declared)
    assert metadata["content_type"] == served
    response = download(client, token, metadata["id"])
    assert response.headers["Content-Type"] == served


def test_download_is_an_attachment_that_is_not_sniffed(client, token):
    metadata = uploaded(client, token, b"<html>", "page.html", content_type="text/html")
    response = download(client, token, metadata["id"])
    disposition, _ = parse_options_header(response.headers["Content-Disposition"])
    assert disposition == "attachment"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_download_etag_is_the_quoted_sha256(client, token):
    metadata = uploaded(client, token, b"tagged")
    response = download(client, token, metadata["id"])
    assert response.headers["ETag"] == f'"{metadata["sha256"]}"'


def test_download_last_modified_is_the_upload_time(client, token):
    metadata = uploaded(client, token)
    response = download(client, token, metadata["id"])
    created = datetime.fromisoformat(metadata["created_at"]).replace(microsecond=0)
    assert "Last-Modified" in response.headers
    assert response.last_modified == created


def test_download_advertises_byte_ranges(client, token):
    response = download(client, token, uploaded(client, token)["id"])
    assert response.headers["Accept-Ranges"] == "bytes"


# --- ranges --------------------------------------------------------------------


@SMALL_CHUNKS
@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=10-20", 10, 21),
        ("bytes=4090-4100", 4090, 4101),
        ("bytes=8192-", 8192, BIG),
        ("bytes=-5", BIG - 5, BIG),
        ("bytes=-100000", 0, BIG),
        ("bytes=5-999999", 5, BIG),
    ],
    ids=[
        "first-byte",
        "inside-a-chunk",
        "across-a-chunk-boundary",
        "open-ended",
        "suffix",
        "suffix-longer-than-file",
        "end-clamped",
    ],
)
def test_single_range_is_a_206_with_those_bytes(
    client, token, big_file, header, start, stop
):
    file_id, content = big_file
    response = download(client, token, file_id, Range=header)
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{BIG}"
    assert response.headers["Content-Length"] == str(stop - start)
    assert response.get_data() == content[start:stop]


@SMALL_CHUNKS
def test_unsatisfiable_range_is_416(client, token, big_file):
    file_id, _ = big_file
    response = download(client, token, file_id, Range="bytes=999999-")
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{BIG}"


@pytest.mark.parametrize("header", ["bytes=0-0", "bytes=0-", "bytes=-5"])
def test_any_range_on_an_empty_file_is_416(client, token, header):
    file_id = uploaded(client, token, b"", "empty.bin")["id"]
    response = download(client, token, file_id, Range=header)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */0"


@SMALL_CHUNKS
def test_several_ranges_get_the_whole_file(client, token, big_file):
    file_id, content = big_file
    response = download(client, token, file_id, Range="bytes=0-1,5-6")
    assert response.status_code == 200
    assert "Content-Range" not in response.headers
    assert response.get_data() == content


@SMALL_CHUNKS
@pytest.mark.parametrize(
    "header", ["garbage", "bytes=abc", "bytes=5-2", "bytes=", "items=0-5"]
)
def test_unusable_range_header_gets_the_whole_file(client, token, big_file, header):
    file_id, content = big_file
    response = download(client, token, file_id, Range=header)
    assert response.status_code == 200
    assert response.get_data() == content


@SMALL_CHUNKS
def test_range_reads_only_the_chunks_it_needs(app, client, token, big_file):
    file_id, content = big_file
    assert rows_of(app, file_id) == (1, 4)
    seen_parameters.clear()
    with recorded_statements(app) as statements:
        response = download(client, token, file_id, Range="bytes=4090-4100")
        assert response.get_data() == content[4090:4101]
    reads = [i for i, s in enumerate(statements) if "file_chunk" in s.lower()]
    assert len(reads) == 1
    # One query for seq 0 to 1 (the bounds are its last two parameters), not 0 to 3.
    assert seen_parameters[reads[0]][-2:] == [0, 1]


# --- conditional requests ----------------------------------------------------


@pytest.mark.parametrize(
    "if_none_match",
    ['"{sha}"', "*", 'W/"{sha}"', '"other", "{sha}"'],
    ids=["etag", "star", "weak", "in-a-list"],
)
def test_if_none_match_that_matches_is_304(client, token, if_none_match):
    metadata = uploaded(client, token, b"cached")
    value = if_none_match.format(sha=metadata["sha256"])
    response = download(client, token, metadata["id"], **{"If-None-Match": value})
    assert response.status_code == 304
    assert response.get_data() == b""
    assert response.headers["ETag"] == f'"{metadata["sha256"]}"'


def test_if_none_match_with_another_etag_is_200(client, token):
    metadata = uploaded(client, token, b"changed")
    response = download(client, token, metadata["id"], **{"If-None-Match": '"old"'})
    assert response.status_code == 200
    assert response.get_data() == b"changed"


@SMALL_CHUNKS
@pytest.mark.parametrize(
    ("validator", "status"),
    [("etag", 206), ("other-etag", 200), ("last-modified", 206), ("older-date", 200)],
)
def test_if_range_sends_the_range_only_while_it_matches(
    client, token, big_file, validator, status
):
    file_id, content = big_file
    first = download(client, token, file_id)
    last_modified = first.headers["Last-Modified"]
    values = {
        "etag": first.headers["ETag"],
        "other-etag": '"0123abcd"',
        "last-modified": last_modified,
        "older-date": format_datetime(
            first.last_modified - timedelta(days=1), usegmt=True
        ),
    }
    response = download(
        client, token, file_id, Range="bytes=10-20", **{"If-Range": values[validator]}
    )
    assert response.status_code == status
    assert response.get_data() == (content[10:21] if status == 206 else content)


@SMALL_CHUNKS
def test_a_weak_if_range_gets_the_whole_file(client, token, big_file):
    # RFC 9110 13.1.5: If-Range compares strongly; a weak validator never matches.
    file_id, content = big_file
    etag = download(client, token, file_id).headers["ETag"]
    response = download(
        client, token, file_id, Range="bytes=10-20", **{"If-Range": "W/" + etag}
    )
    assert response.status_code == 200
    assert response.get_data() == content
    assert "Content-Range" not in response.headers


# --- Content-Disposition -------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    [
        "plain.txt",
        "../../etc/passwd",
        "a%22b%0D%0AX-Evil: 1.txt",
        "évil ✓.pdf",
        "semi;colon,comma.txt",
        "back\\slash.txt",
        "n" * 296 + ".txt",
    ],
    ids=[
        "plain",
        "traversal",
        "header-injection",
        "unicode",
        "separators",
        "backslash-path",
        "long",
    ],
)
def test_content_disposition_is_well_formed(client, token, filename):
    header, _ = disposition_of(client, token, filename)
    assert WELL_FORMED_DISPOSITION.fullmatch(header), header


def test_disposition_of_a_path_is_its_last_component(client, token):
    header, _ = disposition_of(client, token, "../../etc/passwd")
    assert plain_filename(header) == "passwd"
    assert parse_options_header(header)[1]["filename"] == "passwd"


def test_disposition_cannot_inject_a_header(client, token):
    metadata = uploaded(client, token, b"x", "a%22b%0D%0AX-Evil: 1.txt")
    response = download(client, token, metadata["id"])
    header = response.headers["Content-Disposition"]
    assert "\r" not in header and "\n" not in header
    assert WELL_FORMED_DISPOSITION.fullmatch(header), header
    assert "X-Evil" not in response.headers
    assert parse_options_header(header)[1]["filename"] == metadata["filename"]


def test_disposition_of_a_unicode_name_has_an_ascii_fallback(client, token):
    header, metadata = disposition_of(client, token, "évil ✓.pdf")
    fallback = plain_filename(header)
    assert fallback and fallback.isascii()
    assert "filename*=UTF-8''%C3%A9vil%20%E2%9C%93.pdf" in header
    raw = extended_filename(header)
    assert unquote(raw.split("''", 1)[1]) == metadata["filename"] == "évil ✓.pdf"
    assert parse_options_header(header)[1]["filename"] == metadata["filename"]


def test_disposition_of_a_unicode_name_decodes_with_the_email_parser(client, token):
    header, metadata = disposition_of(client, token, "évil ✓.pdf")
    message = Message()
    message["Content-Disposition"] = header
    [extended] = [
        value
        for key, value in message.get_params(header="content-disposition")[1:]
        if isinstance(value, tuple)
    ]
    assert collapse_rfc2231_value(extended) == metadata["filename"]


def test_disposition_of_a_long_name_is_the_255_character_stored_name(client, token):
    header, metadata = disposition_of(client, token, "n" * 296 + ".txt")
    assert metadata["filename"] == "n" * 251 + ".txt"
    assert plain_filename(header) == metadata["filename"]
    assert parse_options_header(header)[1]["filename"] == metadata["filename"]


# --- DELETE /files/<id> ----------------------------------------------------------


@SMALL_CHUNKS
def test_delete_answers_204_with_an_empty_body(client, token, big_file):
    response = client.delete(f"/files/{big_file[0]}", headers=bearer(token))
    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers


@SMALL_CHUNKS
@pytest.mark.parametrize("path", ["/files/{id}", "/files/{id}/download"])
def test_deleted_file_is_404(client, token, big_file, path):
    file_id, _ = big_file
    assert client.delete(f"/files/{file_id}", headers=bearer(token)).status_code == 204
    response = client.get(path.format(id=file_id), headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


@SMALL_CHUNKS
def test_delete_removes_the_file_and_chunk_rows(app, client, token, big_file):
    file_id, _ = big_file
    assert rows_of(app, file_id) == (1, 4)
    client.delete(f"/files/{file_id}", headers=bearer(token))
    assert rows_of(app, file_id) == (0, 0)


@SMALL_CHUNKS
def test_delete_leaves_other_files_untouched(app, client, auth, token, big_file):
    auth.create_user("bob")
    bob_token = auth.token("bob")
    mine = uploaded(client, token, random_bytes(CHUNK + 1, 1), "mine.bin")
    bobs = uploaded(client, bob_token, random_bytes(CHUNK + 2, 2), "bob.bin")
    client.delete(f"/files/{big_file[0]}", headers=bearer(token))
    assert rows_of(app, mine["id"]) == (1, 2)
    assert rows_of(app, bobs["id"]) == (1, 2)
    kept = download(client, token, mine["id"]).get_data()
    assert kept == random_bytes(CHUNK + 1, 1)


# --- ownership and ids -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/files/{id}"),
        ("GET", "/files/{id}/download"),
        ("DELETE", "/files/{id}"),
    ],
)
def test_another_users_file_is_not_found(client, auth, token, method, path):
    auth.create_user("bob")
    bobs = uploaded(client, auth.token("bob"), b"bob's secret")
    response = client.open(
        path.format(id=bobs["id"]), method=method, headers=bearer(token)
    )
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


def test_another_users_file_survives_a_delete_attempt(app, client, auth, token):
    auth.create_user("bob")
    bob_token = auth.token("bob")
    bobs = uploaded(client, bob_token, b"bob's secret")
    client.delete(f"/files/{bobs['id']}", headers=bearer(token))
    assert rows_of(app, bobs["id"]) == (1, 1)
    assert download(client, bob_token, bobs["id"]).get_data() == b"bob's secret"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/files/{id}"),
        ("GET", "/files/{id}/download"),
        ("DELETE", "/files/{id}"),
    ],
)
def test_nonexistent_file_is_not_found(client, token, method, path):
    missing = uploaded(client, token)["id"] + 1000
    response = client.open(
        path.format(id=missing), method=method, headers=bearer(token)
    )
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


@pytest.mark.parametrize("suffix", ["", "/download"])
@pytest.mark.parametrize(
    "file_id", ["0", "-1", "abc", "1.5", "99999999999999999999", "2147483648"]
)
def test_ids_that_are_not_positive_integers_are_a_json_404(
    client, token, file_id, suffix
):
    response = client.get(f"/files/{file_id}{suffix}", headers=bearer(token))
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == {"message"}


@pytest.mark.parametrize("path", ["/files/{id}", "/files/{id}/download"])
def test_unfinished_upload_is_not_found(app, client, token, path):
    file_id = insert_file(app, user_id(app), b"half", complete=False)
    response = client.get(path.format(id=file_id), headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


# --- expected digests on upload --------------------------------------------------


@pytest.mark.parametrize("case", [str.lower, str.upper], ids=["lower", "upper"])
def test_upload_with_the_right_sha256_header_is_stored(app, client, token, case):
    digest = case(hashlib.sha256(b"checked").hexdigest())
    response = upload(client, token, b"checked", headers={"X-Content-SHA256": digest})
    assert response.status_code == 201
    assert response.get_json()["sha256"] == digest.lower()
    assert row_counts(app) == (1, 1)


def test_upload_with_a_wrong_sha256_header_is_refused_and_nothing_kept(
    app, client, token
):
    digest = hashlib.sha256(b"something else").hexdigest()
    response = upload(client, token, b"checked", headers={"X-Content-SHA256": digest})
    assert response.status_code == 400
    assert "SHA-256" in response.get_json()["message"]
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize(
    "value",
    ["abc", "a" * 63, "a" * 65, "g" * 64, ""],
    ids=["short", "63", "65", "non-hex", "empty"],
)
def test_upload_with_a_malformed_sha256_header_is_refused(app, client, token, value):
    response = upload(client, token, b"checked", headers={"X-Content-SHA256": value})
    assert response.status_code == 400
    assert "message" in response.get_json()
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize("position", ["before", "after"])
def test_upload_with_the_right_sha256_field_is_stored(app, client, token, position):
    field = [("sha256", hashlib.sha256(b"checked").hexdigest())]
    response = upload(client, token, b"checked", **{position: field})
    assert response.status_code == 201
    assert row_counts(app) == (1, 1)


@pytest.mark.parametrize("position", ["before", "after"])
def test_upload_with_a_wrong_sha256_field_is_refused_and_nothing_kept(
    app, client, token, position
):
    field = [("sha256", hashlib.sha256(b"other").hexdigest())]
    response = upload(client, token, b"checked", **{position: field})
    assert response.status_code == 400
    assert "message" in response.get_json()
    assert row_counts(app) == (0, 0)


# --- real HTTP -------------------------------------------------------------------


@pytest.mark.slow
def test_thirty_mebibyte_download_streams_in_bounded_memory(server):
    token = sign_in(server)["token"]
    status, body, sha256 = stream_upload(server, token, 30 * MIB, seed=3)
    assert status == 201, body
    [worker] = server.worker_pids()
    idle = proc_status(worker, "VmRSS")
    # The upload already raised the peak: reset VmHWM to the idle VmRSS first.
    with open(f"/proc/{worker}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    peak_before = proc_status(worker, "VmHWM")
    assert peak_before - idle < 8 * MIB
    digest = hashlib.sha256()
    received = 0
    with requests.get(
        f"{server.url}/files/{body['id']}/download",
        headers=bearer(token),
        stream=True,
        timeout=120,
    ) as response:
        assert response.status_code == 200
        for piece in response.iter_content(MIB):
            digest.update(piece)
            received += len(piece)
    peak_after = proc_status(worker, "VmHWM")
    assert received == 30 * MIB
    assert digest.hexdigest() == sha256
    growth = peak_after - peak_before
    assert growth < MAX_DOWNLOAD_GROWTH, f"worker grew by {growth / MIB:.1f} MiB"


@pytest.mark.slow
def test_range_request_over_http_returns_those_bytes(server):
    token = sign_in(server)["token"]
    status, body, _ = stream_upload(server, token, 30 * MIB, seed=4)
    assert status == 201, body
    response = requests.get(
        f"{server.url}/files/{body['id']}/download",
        headers=bearer(token, Range="bytes=10000000-10000099"),
        timeout=60,
    )
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 10000000-10000099/{30 * MIB}"
    assert response.content == seeded_slice(30 * MIB, 4, 10_000_000, 10_000_100)
