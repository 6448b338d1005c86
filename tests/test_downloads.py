"""GET /files/<id>/download: exact bytes, ranges, conditional requests, and a
Content-Disposition that cannot inject a header."""

import hashlib
import re
from datetime import datetime, timedelta
from email.message import Message
from email.utils import collapse_rfc2231_value, format_datetime
from urllib.parse import unquote

import pytest
from werkzeug.http import parse_options_header

import storage
from helpers import (
    BIG,
    CHUNK,
    SMALL_CHUNKS,
    disposition_of,
    download,
    extended_filename,
    plain_filename,
    random_bytes,
    recorded_statements,
    rows_of,
    seen_parameters,
    uploaded,
)
from models import FileChunk, db

# RFC 6266 attachment with a quoted ASCII filename and an optional RFC 8187 filename*.
WELL_FORMED_DISPOSITION = re.compile(
    r'attachment; filename="(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"'
    r"(?:; filename\*=UTF-8''(?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})+)?"
)

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
