"""POST /upload: protected, streamed into chunk rows, and all-or-nothing."""

import hashlib
import io
import os
import threading

import pytest
from sqlalchemy.exc import OperationalError

import storage
from helpers import (
    HTML,
    METADATA_FIELDS,
    MIB,
    end,
    form_upload,
    multipart_upload,
    opened_chunks,
    part,
    raw_upload,
    row_counts,
    stored_bytes,
)
from models import StoredFile, db
from storage import clean_filename, content_type_for


def test_upload_with_query_token_stores_the_file(app, client, token):
    response = form_upload(client, token, b"some bytes", "notes.txt", "my notes")
    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "file notes.txt uploaded successfully"
    assert body["filename"] == "notes.txt"
    assert body["description"] == "my notes"
    assert body["content_type"] == "text/plain"
    assert body["size"] == 10
    assert body["sha256"] == hashlib.sha256(b"some bytes").hexdigest()
    assert body["created_at"].endswith("+00:00")
    assert set(body) == METADATA_FIELDS | {"message"}
    assert stored_bytes(app, body["id"]) == b"some bytes"


def test_upload_with_bearer_header_stores_the_file(client, token):
    response = client.post(
        "/upload",
        data={"inputFile": (io.BytesIO(b"x"), "x.bin")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201


def test_upload_without_token_is_rejected(app, client, token):
    response = client.post("/upload", data={"inputFile": (io.BytesIO(b"x"), "x.bin")})
    assert response.status_code == 401
    assert response.get_json() == {"message": "Token missing"}
    assert row_counts(app) == (0, 0)


def test_upload_with_invalid_token_is_rejected(app, client, token):
    response = form_upload(client, token[:-3] + "abc")
    assert response.status_code == 401
    assert row_counts(app) == (0, 0)


def test_uploaded_file_belongs_to_the_uploader(app, auth, client):
    auth.create_user("alice")
    bob_id = auth.create_user("bob")
    file_id = form_upload(client, auth.token("bob")).get_json()["id"]
    with app.app_context():
        assert db.session.get(StoredFile, file_id).owner_id == bob_id


def test_browser_form_post_redirects_back_with_a_flash(client, token):
    response = form_upload(client, token, filename="photo.jpg", headers=HTML)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/?token={token}"
    page = client.get(response.headers["Location"], headers=HTML).get_data(as_text=True)
    assert "file photo.jpg uploaded successfully" in page


def test_same_description_twice_is_fine(client, token):
    assert form_upload(client, token, description="same").status_code == 201
    assert form_upload(client, token, description="same").status_code == 201


def test_description_is_optional(client, token):
    assert form_upload(client, token).get_json()["description"] == ""


def test_description_of_200_characters_is_accepted(client, token):
    text = "é" * 200
    assert (
        form_upload(client, token, description=text).get_json()["description"] == text
    )


@pytest.mark.parametrize("description_first", [True, False])
def test_description_over_200_characters_is_refused(
    app, client, token, description_first
):
    description = part("description", b"d" * 201)
    file_part = part("inputFile", b"content", filename="a.txt")
    parts = [description, file_part] if description_first else [file_part, description]
    response = raw_upload(client, token, b"".join(parts) + end())
    assert response.status_code == 400
    assert "200" in response.get_json()["message"]
    assert row_counts(app) == (0, 0)


def test_description_that_is_not_utf8_is_refused(app, client, token):
    body = (
        part("inputFile", b"x", filename="a.txt") + part("description", b"\xff") + end()
    )
    response = raw_upload(client, token, body)
    assert response.status_code == 400
    assert row_counts(app) == (0, 0)


def test_upload_without_a_file_part_is_refused(app, client, token):
    response = client.post(
        f"/upload?token={token}",
        data={"description": "no file"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "No file part" in response.get_json()["message"]


def test_upload_with_no_file_selected_is_refused(app, client, token):
    # What a browser sends when the file input is left empty.
    body = part("inputFile", b"", filename="", content_type="application/octet-stream")
    response = raw_upload(client, token, body + end())
    assert response.status_code == 400
    assert response.get_json() == {"message": "No file selected"}
    assert row_counts(app) == (0, 0)


def test_two_files_in_one_upload_are_refused(app, client, token):
    body = part("inputFile", b"a", filename="a") + part("inputFile", b"b", filename="b")
    response = raw_upload(client, token, body + end())
    assert response.status_code == 400
    assert row_counts(app) == (0, 0)


def test_unknown_fields_and_files_are_ignored(app, client, token):
    body = (
        part("other", b"ignored", filename="other.bin")
        + part("submit", b"Upload")
        + part("inputFile", b"kept", filename="kept.txt")
        + end()
    )
    response = raw_upload(client, token, body)
    assert response.status_code == 201
    assert stored_bytes(app, response.get_json()["id"]) == b"kept"
    assert row_counts(app) == (1, 1)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/x-www-form-urlencoded", "text/plain", None],
)
def test_body_that_is_not_multipart_is_refused(client, token, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(f"/upload?token={token}", data=b"a=b", headers=headers)
    assert response.status_code == 415
    assert "multipart/form-data" in response.get_json()["message"]


def test_multipart_without_boundary_is_refused(client, token):
    response = client.post(
        f"/upload?token={token}", data=b"x", content_type="multipart/form-data"
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary anywhere",
        b'--XyZ\r\nContent-Disposition: form-data; name="inputFile"; filename="a"\r\n',
        b"--XyZ\r\nX-No-Disposition: 1\r\n\r\nabc\r\n--XyZ--\r\n",
        part("inputFile", b"truncated", filename="a.txt")[:-2],
    ],
    ids=["no-boundary", "headers-only", "no-disposition", "no-closing-boundary"],
)
def test_malformed_multipart_is_refused_and_nothing_kept(app, client, token, body):
    response = raw_upload(client, token, body)
    assert response.status_code == 400
    assert "message" in response.get_json()
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize("app_settings", [{"MAX_CONTENT_LENGTH": 4096}])
def test_body_over_the_limit_is_refused_with_413(app, client, token):
    response = form_upload(client, token, os.urandom(8192))
    assert response.status_code == 413
    assert "4096" in response.get_json()["message"]
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize(
    "app_settings", [{"MAX_CONTENT_LENGTH": 3 * 4096, "CHUNK_SIZE": 4096}]
)
def test_streamed_body_over_the_limit_is_refused_and_chunks_removed(app, client, token):
    # No Content-Length: the limit is only found once chunks were already written.
    body = part("inputFile", os.urandom(5 * 4096), filename="big.bin") + end()

    response = client.post(
        f"/upload?token={token}",
        input_stream=io.BytesIO(body),
        content_type="multipart/form-data; boundary=XyZ",
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": 4096}])
@pytest.mark.parametrize(
    "size, chunks",
    [(0, 0), (1, 1), (4096, 1), (4097, 2), (3 * 4096 + 5, 4)],
    ids=["empty", "one-byte", "one-chunk", "chunk-plus-one", "multi-chunk"],
)
def test_files_are_split_into_chunks_that_reassemble(app, client, token, size, chunks):
    content = os.urandom(size)
    body = form_upload(client, token, content, "data.bin").get_json()
    assert body["size"] == size
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert row_counts(app) == (1, chunks)
    assert stored_bytes(app, body["id"]) == content


def test_default_chunk_size_is_one_mebibyte(app, client, token):
    content = os.urandom(MIB + 1)
    body = part("inputFile", content, filename="a.bin") + end()
    file_id = raw_upload(client, token, body).get_json()["id"]
    with app.app_context():
        sizes = [len(data) for _, data in opened_chunks(file_id)]
        assert sizes == [MIB, 1]


@pytest.mark.slow
def test_forty_mebibyte_upload_reassembles_byte_identical(app, client, token):
    # Built by hand: the test client would spool a large body to a temporary file.
    content = os.urandom(40 * MIB)
    body = raw_upload(client, token, part("inputFile", content, "big.bin") + end())
    body = body.get_json()
    assert body["size"] == 40 * MIB
    stored = stored_bytes(app, body["id"])
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(content).hexdigest()
    assert row_counts(app) == (1, 40)


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": 4096}])
def test_database_failure_mid_upload_keeps_nothing(app, client, token, monkeypatch):
    real_insert = storage.insert_chunk

    def failing_insert(connection, insert, row):
        if row["seq"] == 2:
            raise OperationalError("INSERT", {}, Exception("server has gone away"))
        real_insert(connection, insert, row)

    monkeypatch.setattr(storage, "insert_chunk", failing_insert)
    response = form_upload(client, token, os.urandom(5 * 4096))
    assert response.status_code == 503
    assert response.get_json() == {"message": "Database unavailable"}
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": 4096}])
def test_storer_reports_the_failure_not_the_rollback_after_it(app, auth, monkeypatch):
    # When the server goes away, the rollback that closes the storing thread's
    # connection fails as well; the error the upload reports is the first one.
    lost = OperationalError("INSERT", {}, Exception("server has gone away"))
    real_insert = storage.insert_chunk

    def failing_insert(connection, insert, row):
        if row["seq"] == 1:
            raise lost
        real_insert(connection, insert, row)

    monkeypatch.setattr(storage, "insert_chunk", failing_insert)
    owner_id = auth.create_user()
    with app.app_context():
        dialect = db.engine.dialect

        def rollback_fails_off_the_main_thread(dbapi_connection):
            if threading.current_thread() is not threading.main_thread():
                raise dialect.loaded_dbapi.InterfaceError("Server has gone away")
            real_rollback(dbapi_connection)

        real_rollback = dialect.do_rollback
        monkeypatch.setattr(dialect, "do_rollback", rollback_fails_off_the_main_thread)
        stored_file = StoredFile(
            owner_id=owner_id, filename="x.bin", chunk_size=4096, complete=False
        )
        db.session.add(stored_file)
        db.session.commit()
        writer = storage.ChunkWriter(stored_file)
        with pytest.raises(OperationalError) as raised:
            writer.write(os.urandom(4 * 4096))
            writer.finish()
        assert raised.value is lost
        storage.discard(stored_file.id)


def test_unexpected_failure_mid_upload_keeps_nothing(app, client, token, monkeypatch):
    def broken_finish(self):
        raise RuntimeError("bug")

    monkeypatch.setattr(storage.ChunkWriter, "finish", broken_finish)
    response = form_upload(client, token, b"abc")
    assert response.status_code == 500
    assert "Traceback" not in response.get_data(as_text=True)
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize(
    "sent, kept",
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ('a"b\r\nX-Evil: 1.txt', 'a"bX-Evil: 1.txt'),
        ("évil ✓.pdf", "évil ✓.pdf"),
        ("e\u0301.txt", "\u00e9.txt"),
        ("\u202etxt.exe", "txt.exe"),
        ("..", "unnamed"),
        ("  spaced  ", "spaced"),
        ("a%22b%0D%0Ac.txt", 'a"bc.txt'),
    ],
)
def test_filenames_are_cleaned(sent, kept):
    assert clean_filename(sent) == kept


def test_long_filenames_are_cut_to_255_keeping_the_extension():
    name = clean_filename("x" * 300 + ".tar.gz")
    assert len(name) == 255
    assert name.endswith(".gz")


@pytest.mark.parametrize(
    "sent, kept",
    [
        # How a browser escapes a name with a quote and a line break in it.
        ("a%22b%0D%0AX-Evil: 1.txt", 'a"bX-Evil: 1.txt'),
        ("évil ✓.pdf", "évil ✓.pdf"),
        ("../../etc/passwd", "passwd"),
        ("y" * 300 + ".pdf", "y" * 251 + ".pdf"),
    ],
)
def test_hostile_filename_round_trips_on_the_database(app, client, token, sent, kept):
    disposition = f'form-data; name="inputFile"; filename="{sent}"'
    body = (
        f"--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        + b"x\r\n"
        + end()
    )
    response = raw_upload(client, token, body)
    assert response.status_code == 201
    assert response.get_json()["filename"] == kept
    with app.app_context():
        assert db.session.get(StoredFile, response.get_json()["id"]).filename == kept


@pytest.mark.parametrize(
    "declared, filename, kept",
    [
        ("image/png", "x.bin", "image/png"),
        ("TEXT/CSV; charset=utf-8", "x", "text/csv"),
        (None, "x.pdf", "application/pdf"),
        ("not a type", "x.json", "application/json"),
        ("text/html\r\nX: y", "x", "application/octet-stream"),
        (None, "noextension", "application/octet-stream"),
    ],
)
def test_content_type_is_declared_or_guessed(declared, filename, kept):
    assert content_type_for(declared, filename) == kept


def test_declared_content_type_is_stored(client, token):
    body = (
        part("inputFile", b"\x89PNG", filename="pic", content_type="image/png") + end()
    )
    assert raw_upload(client, token, body).get_json()["content_type"] == "image/png"


@pytest.mark.parametrize("file_first", [True, False])
def test_too_many_form_parts_is_a_400_that_says_so(app, client, token, file_first):
    fields = [part(f"extra{number}", b"x") for number in range(20)]
    file_part = [part("inputFile", b"hello", "hello.txt")]
    parts = file_part + fields if file_first else fields + file_part
    response = raw_upload(client, token, b"".join(parts) + end())
    assert response.status_code == 400
    assert response.get_json() == {"message": "The form has more than 16 parts"}
    assert row_counts(app) == (0, 0)


def test_sixteen_form_parts_are_accepted(app, client, token):
    fields = [part(f"extra{number}", b"x") for number in range(15)]
    response = raw_upload(
        client, token, b"".join([part("inputFile", b"hi", "hi.txt"), *fields]) + end()
    )
    assert response.status_code == 201


def test_oversized_part_headers_are_a_400_not_a_413(app, client, token):
    head = (
        '--XyZ\r\nContent-Disposition: form-data; name="inputFile"; filename="a"\r\n'
        f"X-Padding: {'p' * (1024 * 1024 + 10)}\r\n\r\n"
    ).encode()
    response = raw_upload(client, token, head + b"hello\r\n" + end())
    assert response.status_code == 400
    assert response.get_json() == {"message": "A part's headers are too large"}
    assert row_counts(app) == (0, 0)


# --- expected digests on upload --------------------------------------------------


@pytest.mark.parametrize("case", [str.lower, str.upper], ids=["lower", "upper"])
def test_upload_with_the_right_sha256_header_is_stored(app, client, token, case):
    digest = case(hashlib.sha256(b"checked").hexdigest())
    response = multipart_upload(
        client, token, b"checked", headers={"X-Content-SHA256": digest}
    )
    assert response.status_code == 201
    assert response.get_json()["sha256"] == digest.lower()
    assert row_counts(app) == (1, 1)


def test_upload_with_a_wrong_sha256_header_is_refused_and_nothing_kept(
    app, client, token
):
    digest = hashlib.sha256(b"something else").hexdigest()
    response = multipart_upload(
        client, token, b"checked", headers={"X-Content-SHA256": digest}
    )
    assert response.status_code == 400
    assert "SHA-256" in response.get_json()["message"]
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize(
    "value",
    ["abc", "a" * 63, "a" * 65, "g" * 64, ""],
    ids=["short", "63", "65", "non-hex", "empty"],
)
def test_upload_with_a_malformed_sha256_header_is_refused(app, client, token, value):
    response = multipart_upload(
        client, token, b"checked", headers={"X-Content-SHA256": value}
    )
    assert response.status_code == 400
    assert "message" in response.get_json()
    assert row_counts(app) == (0, 0)


@pytest.mark.parametrize("position", ["before", "after"])
def test_upload_with_the_right_sha256_field_is_stored(app, client, token, position):
    field = [("sha256", hashlib.sha256(b"checked").hexdigest())]
    response = multipart_upload(client, token, b"checked", **{position: field})
    assert response.status_code == 201
    assert row_counts(app) == (1, 1)


@pytest.mark.parametrize("position", ["before", "after"])
def test_upload_with_a_wrong_sha256_field_is_refused_and_nothing_kept(
    app, client, token, position
):
    field = [("sha256", hashlib.sha256(b"other").hexdigest())]
    response = multipart_upload(client, token, b"checked", **{position: field})
    assert response.status_code == 400
    assert "message" in response.get_json()
    assert row_counts(app) == (0, 0)
