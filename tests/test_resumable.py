"""Resumable uploads: the tus 1.0.0 protocol on /uploads, into chunk rows."""

import base64
import hashlib
import re
import time
from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest

from helpers import (
    BIG,
    CHUNK,
    OFFSET_STREAM,
    SMALL_CHUNKS,
    bearer,
    chunk_rows,
    create_upload,
    download,
    make_token,
    new_upload,
    random_bytes,
    row_counts,
    rows_of,
    send_piece,
    set_expiry,
    stored_bytes,
    tus_headers,
    tus_metadata,
    tus_upload,
    upload_count,
    upload_offset,
    upload_path,
    upload_row,
    uploaded,
    user_id,
)
from models import utcnow

LOCATION_RE = re.compile(r"http://localhost/uploads/[A-Za-z0-9_-]{32}")
EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,"
    "termination,checksum,expiration"
)
UNKNOWN_KEY = "A" * 32


def checksum(name: str, data: bytes) -> str:
    """An Upload-Checksum value for ``data``."""
    digest = hashlib.new(name, data).digest()
    return f"{name} {base64.b64encode(digest).decode()}"


def head(client, path, token=None):
    """HEAD an upload; the response."""
    return client.head(path, headers=tus_headers(token))


def listed(client, token) -> list[dict]:
    """The caller's files, through GET /files."""
    response = client.get("/files", headers=bearer(token))
    assert response.status_code == 200
    return response.get_json()["items"]


# --- capabilities and the protocol version -------------------------------------


@pytest.mark.one_database
@pytest.mark.parametrize("app_settings", [{"MAX_FILE_SIZE": 123456}])
def test_options_describes_the_server_without_a_token(client):
    response = client.options("/uploads")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Extension"] == EXTENSIONS
    assert response.headers["Tus-Max-Size"] == "123456"
    assert response.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Tus-Resumable" not in response.headers
    assert response.data == b""


@pytest.mark.parametrize("version", [None, "0.2.2"])
@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE"])
def test_a_request_without_tus_resumable_1_0_0_is_a_412(
    app, client, token, method, version
):
    path = new_upload(client, token, 10)
    headers = {
        **bearer(token),
        "Content-Type": OFFSET_STREAM,
        "Upload-Length": "3",
        "Upload-Offset": "0",
    }
    if version is not None:
        headers["Tus-Resumable"] = version
    url = "/uploads" if method == "POST" else path
    body = b"abc" if method in ("POST", "PATCH") else None
    response = client.open(url, method=method, headers=headers, data=body)
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    # Nothing happened: one upload, still at offset 0.
    assert upload_count(app) == 1
    assert upload_offset(client, path) == 0


def test_every_error_says_tus_resumable_and_is_json(client, token):
    path = new_upload(client, token, 10)
    answers = {
        401: client.post("/uploads", headers=tus_headers(Upload_Length=1)),
        400: client.post("/uploads", headers=tus_headers(token)),
        404: send_piece(client, f"/uploads/{UNKNOWN_KEY}", 0, b"x"),
        409: send_piece(client, path, 5, b"x"),
        415: send_piece(client, path, 0, b"x", Content_Type="text/plain"),
    }
    for status, response in answers.items():
        assert response.status_code == status
        assert response.headers["Tus-Resumable"] == "1.0.0"
        assert response.headers["Cache-Control"] == "no-store"
        assert isinstance(response.get_json()["message"], str)


@pytest.mark.parametrize("method, where", [("GET", "endpoint"), ("PUT", "upload")])
def test_a_method_an_upload_url_does_not_take_is_a_405_saying_tus_resumable(
    client, token, method, where
):
    url = "/uploads" if where == "endpoint" else new_upload(client, token, 10)
    response = client.open(url, method=method, headers=tus_headers(token))
    assert response.status_code == 405
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Cache-Control"] == "no-store"


# --- creation -------------------------------------------------------------------


def test_creation_answers_201_with_an_absolute_location_and_expiry(app, client, token):
    before = utcnow()
    response = create_upload(client, token, 10)
    assert response.status_code == 201
    assert LOCATION_RE.fullmatch(response.headers["Location"])
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Cache-Control"] == "no-store"
    expires = parsedate_to_datetime(response.headers["Upload-Expires"])
    expiry = timedelta(seconds=app.config["UPLOAD_EXPIRY_SECONDS"])
    assert before + expiry - timedelta(seconds=2) < expires < utcnow() + expiry
    assert "Lockbox-File-Id" not in response.headers
    assert listed(client, token) == []


@pytest.mark.parametrize("how", ["bearer", "query"])
def test_creation_takes_the_token_as_bearer_or_query(client, token, how):
    if how == "bearer":
        response = create_upload(client, token, 10)
    else:
        headers = tus_headers(Upload_Length=10)
        response = client.post(f"/uploads?token={token}", headers=headers)
    assert response.status_code == 201


@pytest.mark.parametrize("credential", [None, "not-a-token"])
def test_creation_without_a_valid_token_is_a_401(app, client, token, credential):
    response = create_upload(client, credential, 10)
    assert response.status_code == 401
    assert row_counts(app) == (0, 0)
    assert upload_count(app) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Upload_Length": "10", "Upload_Defer_Length": "1"},
        {"Upload_Defer_Length": "2"},
        {"Upload_Length": "-1"},
        {"Upload_Length": "ten"},
        {"Upload_Length": "10", "Upload_Metadata": "filename !!!notbase64"},
        {"Upload_Length": "10", "Upload_Metadata": "filename " + "//79"},
        {"Upload_Length": "10", "Upload_Metadata": tus_metadata(description="d" * 201)},
    ],
    ids=[
        "neither-length",
        "both-lengths",
        "defer-length-2",
        "negative-length",
        "length-not-a-number",
        "metadata-not-base64",
        "metadata-not-utf8",
        "description-of-201",
    ],
)
def test_a_bad_creation_is_a_400_and_creates_nothing(app, client, token, headers):
    response = client.post("/uploads", headers=tus_headers(token, **headers))
    assert response.status_code == 400
    assert response.get_json()["message"]
    assert row_counts(app) == (0, 0)
    assert upload_count(app) == 0


def test_upload_metadata_names_the_finished_file(client, token):
    metadata = tus_metadata(
        filename="notes.txt", filetype="text/plain", description="é" * 200
    )
    path = new_upload(client, token, 5, Upload_Metadata=metadata)
    assert head(client, path).headers["Upload-Metadata"] == metadata
    file_id = send_piece(client, path, 0, b"hello").headers["Lockbox-File-Id"]
    body = client.get(f"/files/{file_id}", headers=bearer(token)).get_json()
    assert body["filename"] == "notes.txt"
    assert body["content_type"] == "text/plain"
    assert body["description"] == "é" * 200


def test_an_empty_upload_is_finished_at_creation(client, token):
    response = create_upload(client, token, 0)
    file_id = int(response.headers["Lockbox-File-Id"])
    [item] = listed(client, token)
    assert (item["id"], item["size"]) == (file_id, 0)
    assert item["sha256"] == hashlib.sha256(b"").hexdigest()
    assert download(client, token, file_id).data == b""


def test_creation_with_upload_stores_the_first_piece(app, client, token):
    content = random_bytes(BIG)
    response = create_upload(client, token, len(content), body=content[:5000])
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "5000"
    path = upload_path(response)
    assert upload_offset(client, path) == 5000
    finished = send_piece(client, path, 5000, content[5000:])
    file_id = int(finished.headers["Lockbox-File-Id"])
    assert download(client, token, file_id).data == content


def test_creation_with_the_whole_body_finishes_the_file(client, token):
    response = create_upload(client, token, 11, body=b"hello world")
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "11"
    file_id = int(response.headers["Lockbox-File-Id"])
    assert download(client, token, file_id).data == b"hello world"


def test_creation_with_a_body_of_another_type_is_a_415(app, client, token):
    response = create_upload(
        client, token, 5, body=b"hello", Content_Type="application/octet-stream"
    )
    assert response.status_code == 415
    assert upload_count(app) == 0


# --- HEAD -------------------------------------------------------------------------


def test_head_reports_offset_length_metadata_and_expiry(client, token):
    metadata = tus_metadata(filename="a.bin")
    path = new_upload(client, token, 100, Upload_Metadata=metadata)
    send_piece(client, path, 0, b"x" * 30)
    response = head(client, path)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "30"
    assert response.headers["Upload-Length"] == "100"
    assert response.headers["Upload-Metadata"] == metadata
    assert parsedate_to_datetime(response.headers["Upload-Expires"]) > utcnow()
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Lockbox-File-Id" not in response.headers


def test_head_of_a_deferred_upload_says_defer_length(client, token):
    response = head(client, new_upload(client, token))
    assert response.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in response.headers


def test_head_of_a_finished_upload_names_its_file(client, token):
    path = new_upload(client, token, 5)
    file_id = send_piece(client, path, 0, b"hello").headers["Lockbox-File-Id"]
    response = head(client, path)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "5"
    assert response.headers["Lockbox-File-Id"] == file_id
    assert response.headers["Content-Location"] == f"/files/{file_id}"
    assert "Upload-Expires" not in response.headers
    metadata = client.get(response.headers["Content-Location"], headers=bearer(token))
    assert metadata.get_json()["size"] == 5


# --- PATCH ------------------------------------------------------------------------


@SMALL_CHUNKS
@pytest.mark.parametrize(
    "sizes",
    [(1, CHUNK - 1), (1000,), (CHUNK + 1,), (3 * CHUNK + 7, 2), (5 * CHUNK + 123,)],
)
def test_pieces_give_the_rows_and_digest_of_one_upload(app, client, token, sizes):
    content = random_bytes(5 * CHUNK + 123, seed=sizes[0])
    file_id = tus_upload(client, token, content, sizes)
    whole = uploaded(client, token, content)
    assert chunk_rows(app, file_id) == chunk_rows(app, whole["id"])
    assert [len(data) for _, data in chunk_rows(app, file_id)] == [CHUNK] * 5 + [123]
    [item] = [item for item in listed(client, token) if item["id"] == file_id]
    assert item["sha256"] == whole["sha256"] == hashlib.sha256(content).hexdigest()
    assert download(client, token, file_id).data == content


@SMALL_CHUNKS
def test_a_finished_upload_downloads_with_ranges(client, token):
    content = random_bytes(BIG)
    file_id = tus_upload(client, token, content, (1000,))
    response = download(client, token, file_id, Range="bytes=4000-8199")
    assert response.status_code == 206
    assert response.data == content[4000:8200]


def test_each_piece_answers_204_with_the_new_offset(client, token):
    path = new_upload(client, token, 10)
    first = send_piece(client, path, 0, b"abcd")
    assert first.status_code == 204
    assert first.headers["Upload-Offset"] == "4"
    assert "Upload-Expires" in first.headers
    assert "Lockbox-File-Id" not in first.headers
    last = send_piece(client, path, 4, b"efghij")
    assert last.status_code == 204
    assert last.headers["Upload-Offset"] == "10"
    file_id = last.headers["Lockbox-File-Id"]
    assert last.headers["Content-Location"] == f"/files/{file_id}"


@SMALL_CHUNKS
@pytest.mark.parametrize("offset", [0, CHUNK, CHUNK + 2, 10**6])
def test_patch_at_a_wrong_offset_is_a_409(app, client, token, offset):
    content = random_bytes(BIG)
    path = new_upload(client, token, len(content))
    send_piece(client, path, 0, content[: CHUNK + 1])
    response = send_piece(client, path, offset, content[offset : offset + 10] or b"x")
    assert response.status_code == 409
    assert upload_offset(client, path) == CHUNK + 1
    file_id = upload_row(app, path).file_id
    assert stored_bytes(app, file_id) == content[: CHUNK + 1]


@pytest.mark.parametrize("offset", [None, "-1", "one"])
def test_patch_without_a_numeric_offset_is_a_400(client, token, offset):
    path = new_upload(client, token, 10)
    headers = tus_headers(Content_Type=OFFSET_STREAM)
    if offset is not None:
        headers["Upload-Offset"] = offset
    response = client.patch(path, data=b"abc", headers=headers)
    assert response.status_code == 400
    assert upload_offset(client, path) == 0


@pytest.mark.parametrize("content_type", ["application/octet-stream", None])
def test_patch_of_another_content_type_is_a_415(client, token, content_type):
    path = new_upload(client, token, 10)
    headers = tus_headers(Upload_Offset=0)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.patch(path, data=b"abc", headers=headers)
    assert response.status_code == 415
    assert upload_offset(client, path) == 0


@SMALL_CHUNKS
def test_a_piece_past_upload_length_is_a_413_and_not_kept(app, client, token):
    content = random_bytes(2 * CHUNK)
    path = new_upload(client, token, len(content))
    send_piece(client, path, 0, content[:5000])
    response = send_piece(client, path, 5000, content[5000:] + b"one too many")
    assert response.status_code == 413
    assert upload_offset(client, path) == 5000
    assert stored_bytes(app, upload_row(app, path).file_id) == content[:5000]
    assert send_piece(client, path, 5000, content[5000:]).status_code == 204


def test_a_deferred_length_is_given_by_a_later_patch(client, token):
    path = new_upload(client, token)
    assert send_piece(client, path, 0, b"x" * 100).status_code == 204
    response = send_piece(client, path, 100, b"y" * 50, Upload_Length=150)
    assert response.status_code == 204
    file_id = response.headers["Lockbox-File-Id"]
    assert head(client, path).headers["Upload-Length"] == "150"
    assert download(client, token, file_id).data == b"x" * 100 + b"y" * 50


def test_a_deferred_length_may_come_before_the_last_piece(client, token):
    path = new_upload(client, token)
    assert send_piece(client, path, 0, b"abc", Upload_Length=6).status_code == 204
    assert head(client, path).headers["Upload-Length"] == "6"
    assert "Lockbox-File-Id" in send_piece(client, path, 3, b"def").headers


def test_an_empty_patch_giving_the_deferred_length_finishes_the_file(client, token):
    path = new_upload(client, token)
    send_piece(client, path, 0, b"x" * 100)
    response = send_piece(client, path, 100, b"", Upload_Length=100)
    assert response.status_code == 204
    file_id = response.headers["Lockbox-File-Id"]
    assert download(client, token, file_id).data == b"x" * 100


@pytest.mark.parametrize("deferred", [True, False], ids=["set-later", "at-creation"])
def test_an_upload_length_once_set_cannot_change(client, token, deferred):
    path = new_upload(client, token, None if deferred else 10)
    if deferred:
        send_piece(client, path, 0, b"", Upload_Length=10)
    response = send_piece(client, path, 0, b"abc", Upload_Length=11)
    assert response.status_code == 400
    assert head(client, path).headers["Upload-Length"] == "10"
    assert upload_offset(client, path) == 0


def test_a_deferred_length_below_the_offset_is_a_400(client, token):
    path = new_upload(client, token)
    send_piece(client, path, 0, b"x" * 100)
    response = send_piece(client, path, 100, b"", Upload_Length=99)
    assert response.status_code == 400
    assert head(client, path).headers["Upload-Defer-Length"] == "1"


def test_an_empty_patch_to_a_finished_upload_is_a_204(client, token):
    path = new_upload(client, token, 5)
    file_id = send_piece(client, path, 0, b"hello").headers["Lockbox-File-Id"]
    response = send_piece(client, path, 5, b"")
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "5"
    assert response.headers["Lockbox-File-Id"] == file_id


def test_a_patch_with_bytes_to_a_finished_upload_is_a_409(client, token):
    path = new_upload(client, token, 5)
    file_id = send_piece(client, path, 0, b"hello").headers["Lockbox-File-Id"]
    assert send_piece(client, path, 5, b"more").status_code == 409
    assert download(client, token, file_id).data == b"hello"


# --- checksums --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_a_piece_with_a_matching_checksum_is_kept(client, token, algorithm):
    path = new_upload(client, token, 10)
    response = send_piece(
        client, path, 0, b"abcd", Upload_Checksum=checksum(algorithm, b"abcd")
    )
    assert response.status_code == 204
    assert upload_offset(client, path) == 4


@SMALL_CHUNKS
@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_a_checksum_mismatch_is_a_460_and_the_piece_is_discarded(
    app, client, token, algorithm
):
    content = random_bytes(3 * CHUNK)
    path = new_upload(client, token, len(content))
    send_piece(client, path, 0, content[:5000])
    file_id = upload_row(app, path).file_id
    rows = chunk_rows(app, file_id)
    wrong = checksum(algorithm, b"something else")
    response = send_piece(client, path, 5000, content[5000:], Upload_Checksum=wrong)
    assert response.status_code == 460
    assert upload_offset(client, path) == 5000
    assert chunk_rows(app, file_id) == rows
    # The client resends the piece, and the file comes out whole.
    right = checksum(algorithm, content[5000:])
    done = send_piece(client, path, 5000, content[5000:], Upload_Checksum=right)
    assert download(client, token, done.headers["Lockbox-File-Id"]).data == content


def test_a_first_piece_failing_its_checksum_at_creation_leaves_nothing(
    app, client, token
):
    wrong = checksum("sha256", b"something else")
    response = create_upload(client, token, 5, body=b"hello", Upload_Checksum=wrong)
    assert response.status_code == 460
    assert "Location" not in response.headers
    # The client was not told the upload's URL: nothing of it may stay behind.
    assert upload_count(app) == 0
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize(
    "value",
    [
        checksum("md5", b"abc"),
        "sha256 not-base64!",
        checksum("sha1", b"abc").replace("sha1", "sha256"),
        "sha1",
    ],
    ids=["md5", "not-base64", "wrong-digest-length", "no-digest"],
)
def test_an_unusable_checksum_is_a_400(client, token, value):
    path = new_upload(client, token, 10)
    response = send_piece(client, path, 0, b"abc", Upload_Checksum=value)
    assert response.status_code == 400
    assert upload_offset(client, path) == 0


# --- termination ------------------------------------------------------------------


@SMALL_CHUNKS
def test_termination_removes_the_upload_and_its_chunks(app, client, token):
    path = new_upload(client, token, BIG)
    send_piece(client, path, 0, random_bytes(2 * CHUNK + 10))
    file_id = upload_row(app, path).file_id
    assert rows_of(app, file_id) == (1, 3)
    response = client.delete(path, headers=tus_headers())
    assert response.status_code == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert head(client, path).status_code == 404
    assert rows_of(app, file_id) == (0, 0)
    assert upload_count(app) == 0


def test_terminating_a_finished_upload_forgets_its_url_and_keeps_the_file(
    app, client, token
):
    path = new_upload(client, token, 5)
    finished = send_piece(client, path, 0, b"hello")
    file_id = int(finished.headers["Lockbox-File-Id"])
    response = client.delete(path, headers=tus_headers())
    assert response.status_code == 204
    assert head(client, path).status_code == 404
    assert upload_count(app) == 0
    assert [item["id"] for item in listed(client, token)] == [file_id]
    assert stored_bytes(app, file_id) == b"hello"


# --- who may touch an upload ------------------------------------------------------


def test_the_key_alone_resumes_the_upload(client, token):
    path = new_upload(client, token, 6)
    assert head(client, path).status_code == 200
    assert send_piece(client, path, 0, b"abc").status_code == 204
    assert send_piece(client, path, 3, b"def").status_code == 204
    assert [item["size"] for item in listed(client, token)] == [6]


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
@pytest.mark.parametrize("how", ["bearer", "query"])
def test_another_users_valid_token_gets_a_404(app, auth, client, token, method, how):
    path = new_upload(client, token, 10)
    send_piece(client, path, 0, b"abc")
    auth.create_user("bob")
    bob = auth.token("bob")
    headers = tus_headers(bob if how == "bearer" else None)
    headers.update({"Content-Type": OFFSET_STREAM, "Upload-Offset": "3"})
    url = path if how == "bearer" else f"{path}?token={bob}"
    data = b"def" if method == "PATCH" else None
    response = client.open(url, method=method, headers=headers, data=data)
    assert response.status_code == 404
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert upload_offset(client, path) == 3


@pytest.mark.parametrize("credential", ["expired", "garbage", "bad-signature"])
def test_an_invalid_or_expired_token_is_ignored(app, client, token, credential):
    path = new_upload(client, token, 10)
    presented = {
        "expired": make_token(
            {"sub": str(user_id(app)), "iat": 1, "exp": int(time.time()) - 3600}
        ),
        "garbage": "not-a-token",
        "bad-signature": token[:-3] + ("abc" if token[-3:] != "abc" else "xyz"),
    }[credential]
    assert head(client, path, presented).status_code == 200
    assert send_piece(client, path, 0, b"abc", presented).status_code == 204


@pytest.mark.parametrize(
    "key",
    [UNKNOWN_KEY, "short", "A" * 33, "A" * 31 + "."],
    ids=["unknown", "short", "long", "bad-character"],
)
def test_a_malformed_or_unknown_key_is_a_404(client, token, key):
    new_upload(client, token, 10)
    assert head(client, f"/uploads/{key}").status_code == 404
    response = client.delete(f"/uploads/{key}", headers=tus_headers(token))
    assert response.status_code == 404
    assert response.get_json() == {"message": "Upload not found"}
    assert response.headers["Tus-Resumable"] == "1.0.0"


def test_signing_out_everywhere_ends_the_key(auth, client, token):
    path = new_upload(client, token, 10)
    assert client.post("/logout?everywhere=1", headers=bearer(token)).status_code == 204
    assert head(client, path).status_code == 404
    assert send_piece(client, path, 0, b"abc").status_code == 404
    # The owner, signed in again, can still resume it.
    fresh = auth.token()
    assert head(client, path, fresh).status_code == 200
    assert send_piece(client, path, 0, b"abc", fresh).status_code == 204


def test_a_new_password_ends_the_key(auth, client, runner, token):
    path = new_upload(client, token, 10)
    new_password = "a brand new password"
    result = runner.invoke(
        args=["users", "set-password", "alice"], input=f"{new_password}\n"
    )
    assert result.exit_code == 0, result.output
    assert head(client, path).status_code == 404
    assert head(client, path, auth.token(password=new_password)).status_code == 200


def half_hour_old_token(app, auth, username="alice") -> str:
    """The account's own access token, as signed half an hour ago and expired."""
    now = int(time.time())
    claims = {
        "sub": str(user_id(app, username)),
        "ver": auth.token_version(username),
        "iat": now - 1800,
        "exp": now - 600,
    }
    return make_token(claims)


@SMALL_CHUNKS
def test_a_30_minute_old_upload_can_still_be_resumed_by_its_owner(
    app, auth, client, token
):
    content = random_bytes(BIG)
    path = new_upload(client, token, len(content))
    send_piece(client, path, 0, content[:CHUNK], token)
    stale = half_hour_old_token(app, auth)
    assert client.get("/files", headers=bearer(stale)).status_code == 401
    assert head(client, path, stale).headers["Upload-Offset"] == str(CHUNK)
    response = send_piece(client, path, CHUNK, content[CHUNK:], stale)
    assert response.status_code == 204
    file_id = response.headers["Lockbox-File-Id"]
    assert download(client, auth.token(), file_id).data == content


def test_a_30_minute_old_upload_cannot_be_resumed_by_bob(app, auth, client, token):
    path = new_upload(client, token, 10)
    send_piece(client, path, 0, b"abc", token)
    auth.create_user("bob")
    bob = auth.token("bob")
    assert head(client, path, bob).status_code == 404
    assert send_piece(client, path, 3, b"def", bob).status_code == 404
    assert client.delete(path, headers=tus_headers(bob)).status_code == 404
    assert head(client, path, half_hour_old_token(app, auth)).status_code == 200
    assert upload_offset(client, path) == 3


def test_other_users_never_see_an_upload_or_its_file(auth, client, token):
    unfinished = new_upload(client, token, 10)
    send_piece(client, unfinished, 0, b"abc")
    finished = new_upload(client, token, 3)
    file_id = send_piece(client, finished, 0, b"abc").headers["Lockbox-File-Id"]
    auth.create_user("bob")
    bob = auth.token("bob")
    assert listed(client, bob) == []
    assert client.get(f"/files/{file_id}", headers=bearer(bob)).status_code == 404
    assert download(client, bob, file_id).status_code == 404
    assert [item["id"] for item in listed(client, token)] == [int(file_id)]


# --- expiry and clean-up ----------------------------------------------------------


def test_each_piece_moves_the_expiry_on(app, client, token):
    path = new_upload(client, token, 10)
    set_expiry(app, path, 5)
    response = send_piece(client, path, 0, b"abc")
    expires = upload_row(app, path).expires_at
    expiry = timedelta(seconds=app.config["UPLOAD_EXPIRY_SECONDS"])
    assert expires > utcnow() + expiry - timedelta(seconds=60)
    header = parsedate_to_datetime(response.headers["Upload-Expires"])
    assert abs(header - expires) < timedelta(seconds=1)


@pytest.mark.parametrize("app_settings", [{"UPLOAD_EXPIRY_SECONDS": 1}])
def test_an_upload_expires_a_while_after_its_last_piece(app, client, token):
    path = new_upload(client, token, 10)
    time.sleep(0.7)
    assert send_piece(client, path, 0, b"abc").status_code == 204
    time.sleep(0.7)
    # 1.4 s after its creation, but only 0.7 s after its last piece.
    assert head(client, path).status_code == 200
    time.sleep(0.5)
    assert head(client, path).status_code == 410


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
def test_an_expired_upload_is_a_410(app, client, token, method):
    path = new_upload(client, token, 10)
    send_piece(client, path, 0, b"abc")
    set_expiry(app, path, -1)
    headers = tus_headers(Content_Type=OFFSET_STREAM, Upload_Offset=3)
    data = b"def" if method == "PATCH" else None
    response = client.open(path, method=method, headers=headers, data=data)
    assert response.status_code == 410
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert upload_count(app) == 1


@SMALL_CHUNKS
def test_gc_removes_expired_unfinished_uploads(app, client, runner, token):
    path = new_upload(client, token, BIG)
    send_piece(client, path, 0, random_bytes(CHUNK + 1))
    file_id = upload_row(app, path).file_id
    set_expiry(app, path, -1)
    result = runner.invoke(args=["files", "gc"])
    assert result.exit_code == 0, result.output
    assert "Removed 1 unfinished uploads" in result.output
    assert head(client, path).status_code == 404
    assert rows_of(app, file_id) == (0, 0)
    assert upload_count(app) == 0


def test_gc_keeps_unexpired_idle_uploads_even_with_idle_zero(
    app, client, runner, token
):
    path = new_upload(client, token, 10)
    send_piece(client, path, 0, b"abc")
    file_id = upload_row(app, path).file_id
    result = runner.invoke(args=["files", "gc", "--idle", "0"])
    assert "Removed 0 unfinished uploads" in result.output
    assert rows_of(app, file_id) == (1, 1)
    assert send_piece(client, path, 3, b"defghij").status_code == 204


def test_gc_removes_only_the_url_of_a_finished_upload_past_expiry(
    app, client, runner, token
):
    path = new_upload(client, token, 5)
    file_id = send_piece(client, path, 0, b"hello").headers["Lockbox-File-Id"]
    set_expiry(app, path, -1)
    result = runner.invoke(args=["files", "gc"])
    assert "Removed 0 unfinished uploads" in result.output
    assert head(client, path).status_code == 404
    assert upload_count(app) == 0
    assert [item["id"] for item in listed(client, token)] == [int(file_id)]
    assert download(client, token, file_id).data == b"hello"


def test_deleting_a_user_removes_their_uploads(app, client, runner, token):
    path = new_upload(client, token, 10)
    send_piece(client, path, 0, b"abc")
    file_id = upload_row(app, path).file_id
    result = runner.invoke(args=["users", "delete", "alice", "--yes"])
    assert result.exit_code == 0, result.output
    assert upload_count(app) == 0
    assert rows_of(app, file_id) == (0, 0)
    assert head(client, path).status_code == 404


def test_the_finished_answer_never_carries_the_token(client, token):
    path = new_upload(client, token, 5)
    response = client.patch(
        f"{path}?token={token}",
        data=b"hello",
        headers=tus_headers(Upload_Offset=0, Content_Type=OFFSET_STREAM),
    )
    assert response.status_code == 204
    file_id = response.headers["Lockbox-File-Id"]
    assert response.headers["Content-Location"] == f"/files/{file_id}"
