"""Real tus clients on the real server: tuspy (Python) and tus-js-client (Node)
make resumable uploads to gunicorn over HTTP, on each database.

The servers store 64 KiB chunks and the clients send pieces of 100,003 bytes,
so that pieces end inside chunks and every append rebuilds a chunk's tail.
"""

import base64
import hashlib
import json
import secrets
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from tusclient import client as tus
from tusclient.exceptions import TusCommunicationError

from harness.server import ROOT, LiveServer
from helpers import (
    OFFSET_STREAM,
    SECRET_KEY,
    AuthActions,
    download_sha256,
    empty_tables,
    listing,
    make_app,
    random_bytes,
    sign_in,
    tus_headers,
    user_id,
)
from models import StoredFile, db
from session_tokens import LEEWAY_SECONDS

pytestmark = pytest.mark.slow

CHUNK_SIZE = 65_536
# The clients' piece size: no multiple of CHUNK_SIZE, nor a divisor of it.
PIECE = 100_003
NODE_CLIENT = Path(__file__).with_name("tus_client.mjs")
# The server that tests tokens outliving their upload issues 2-second tokens;
# they are refused LEEWAY_SECONDS later than that.
TOKEN_TTL_SECONDS = 2
UPLOAD_EXPIRY_SECONDS = 2
# What the server logs when a piece's connection ends before its body does.
CONNECTION_LOST = "connection lost at offset"


# --- servers and accounts -----------------------------------------------------


@dataclass
class Database:
    url: str
    app: Flask
    auth: AuthActions


@pytest.fixture(scope="module", params=["sqlite", "mysqlclient", "mariadbconnector"])
def database(request, tmp_path_factory):
    """A database for this module's servers: SQLite, or MariaDB through each
    driver; emptied when the module is done with it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('tus') / 'lockbox.db'}"
    else:
        url = request.getfixturevalue("mysql_database")
        if request.param == "mariadbconnector":
            url = url.replace("mysql://", "mariadb+mariadbconnector://", 1)
    app = make_app(url)
    yield Database(url, app, AuthActions(app, app.test_client()))
    empty_tables(app)


@contextmanager
def live_site(database: Database, **settings):
    """gunicorn on ``database`` with 64 KiB chunks (and ``settings``).

    Everything the tests register in ``server.secrets`` (upload keys, tokens)
    must stay out of its log, and no request may end in a traceback.
    """
    env = {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database.url,
        "CHUNK_SIZE": str(CHUNK_SIZE),
        "LOGIN_LIMIT_PER_USERNAME": "1000 per minute",
        "LOGIN_LIMIT_PER_ADDRESS": "1000 per minute",
        **{name: str(value) for name, value in settings.items()},
    }
    with LiveServer(env, threads=8) as server:
        server.secrets = []
        yield server
    assert "Traceback" not in server.output, server.output[-5000:]
    leaked = [secret for secret in server.secrets if secret in server.output]
    assert not leaked, f"{len(leaked)} upload keys or tokens are in the log"


@pytest.fixture(scope="module")
def site(database):
    """The server most tests use."""
    with live_site(database) as server:
        yield server


@pytest.fixture(scope="module")
def expiring_site(database):
    """A server whose unfinished uploads expire 2 s after their last piece."""
    with live_site(database, UPLOAD_EXPIRY_SECONDS=UPLOAD_EXPIRY_SECONDS) as server:
        yield server


@dataclass
class Account:
    name: str
    token: str


def account(database: Database, server, prefix="alice") -> Account:
    """A new user (a name of its own: the listing holds this test's files only),
    signed in over HTTP."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    database.auth.create_user(name)
    pair = sign_in(server, name)
    server.secrets += [pair["token"], pair["refresh_token"]]
    return Account(name, pair["token"])


@pytest.fixture
def alice(database, site) -> Account:
    return account(database, site, "alice")


@pytest.fixture
def bob(database, site) -> Account:
    return account(database, site, "bob")


@pytest.fixture
def source(tmp_path):
    """Write reproducible random bytes to a file: (its path, the bytes)."""

    def write(size: int, seed: int = 1, name="source.bin") -> tuple[Path, bytes]:
        content = random_bytes(size, seed)
        path = tmp_path / name
        path.write_bytes(content)
        return path, content

    return write


# --- talking tus --------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tus_client(server, token=None) -> tus.TusClient:
    """A tuspy client for the server's /uploads, sending ``token`` (if any) on
    every request it makes."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return tus.TusClient(server.url + "/uploads", headers=headers)


@contextmanager
def tuspy(server, token, path, **options):
    """A tuspy uploader of the file at ``path`` in pieces of PIECE bytes, sending
    ``token`` (if any) on every request. It reads one stream, closed on the way
    out: given the path, tuspy opens the file for each request and never closes
    it (a ResourceWarning)."""
    with open(path, "rb") as stream:
        yield tus_client(server, token).uploader(
            file_stream=stream, chunk_size=PIECE, **options
        )


def key_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def remember(server, url: str) -> str:
    """Register an upload's key as a secret the log must not hold; the URL."""
    server.secrets.append(key_of(url))
    return url


def create(server, token, length: int) -> str:
    """POST /uploads for ``length`` bytes; the upload's URL."""
    response = requests.post(
        server.url + "/uploads",
        headers=tus_headers(token, Upload_Length=length),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return remember(server, response.headers["Location"])


def head(url, token=None) -> requests.Response:
    return requests.head(url, headers=tus_headers(token), timeout=30)


def offset_of(url) -> int:
    """The offset HEAD reports for an upload that must exist."""
    response = head(url)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def patch(url, offset, data: bytes, token=None, **headers) -> requests.Response:
    """PATCH ``data`` at ``offset``."""
    return requests.patch(
        url,
        data=data,
        headers=tus_headers(
            token, Upload_Offset=offset, Content_Type=OFFSET_STREAM, **headers
        ),
        timeout=30,
    )


def delete(url, token=None) -> requests.Response:
    return requests.delete(url, headers=tus_headers(token), timeout=30)


def sha1_header(data: bytes) -> str:
    """An Upload-Checksum value for ``data``."""
    return "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()


def cut_short(server, method, path, body: bytes, sent: int, token=None, **headers):
    """A tus request announcing all of ``body`` whose connection closes after
    ``sent`` bytes of it. Returns the server's log lines for it, once it has
    logged the request (so it is done with it)."""
    marker = uuid.uuid4().hex
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"X-Request-ID: {marker}",
        *(f"{name}: {value}" for name, value in tus_headers(token, **headers).items()),
        f"Content-Type: {OFFSET_STREAM}",
        f"Content-Length: {len(body)}",
    ]
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head_bytes + body[:sent])
    return logged(server, marker, f"{method} /uploads")


def interrupted_patch(server, url, offset, body: bytes, sent: int, **headers):
    """A PATCH at ``offset`` cut short after ``sent`` bytes of ``body``; the
    server's log lines for it."""
    path = urlsplit(url).path
    return cut_short(server, "PATCH", path, body, sent, Upload_Offset=offset, **headers)


def logged(server, request_id: str, request_line: str) -> list[str]:
    """The log lines of one request, once its own line (``request_line``, e.g.
    "PATCH /uploads/") is written: it comes last, as the answer is sent."""
    deadline = time.monotonic() + 15
    while True:
        lines = [
            line
            for line in server.output_so_far().splitlines()
            if f"[{request_id}]" in line
        ]
        if any(request_line in line for line in lines):
            return lines
        assert time.monotonic() < deadline, f"request {request_id} was never logged"
        time.sleep(0.05)


def stored_files(database: Database, owner: Account) -> list[tuple]:
    """(size, reserved, complete) of every file row the account has, finished
    or not (the listing shows finished ones only)."""
    owner_id = user_id(database.app, owner.name)
    with database.app.app_context():
        rows = db.session.execute(
            db.select(StoredFile.size, StoredFile.reserved, StoredFile.complete)
            .filter_by(owner_id=owner_id)
            .order_by(StoredFile.id)
        ).all()
        db.session.remove()
    return [tuple(row) for row in rows]


def assert_stored(server, token, file_id, content: bytes) -> None:
    """The file downloads as exactly ``content``."""
    assert download_sha256(server, token, file_id) == (
        200,
        sha256(content),
        len(content),
    )


def node_upload(endpoint, token, path, chunk_size=PIECE, **options) -> dict:
    """One run of tus_client.mjs (tus-js-client under Node): its JSON report."""
    command = [
        "node",
        str(NODE_CLIENT),
        endpoint or "-",
        token or "-",
        str(path),
        str(chunk_size),
        json.dumps(options),
    ]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def statuses(report: dict) -> list[int]:
    return [request["status"] for request in report["requests"]]


def wait_for_expiry(url, deadline_seconds=UPLOAD_EXPIRY_SECONDS + 8) -> None:
    """Poll HEAD until the upload stops answering 200."""
    deadline = time.monotonic() + deadline_seconds
    while head(url).status_code == 200:
        assert time.monotonic() < deadline, "the upload never expired"
        time.sleep(0.2)


# --- tuspy --------------------------------------------------------------------


def test_tuspy_uploads_checksummed_pieces_that_match_the_multipart_upload(
    site, alice, source
):
    path, content = source(700_000)
    metadata = {"filename": "tuspy.bin", "filetype": "application/octet-stream"}
    with tuspy(
        site, alice.token, path, upload_checksum=True, metadata=metadata
    ) as uploader:
        assert uploader.checksum_algorithm_name == "sha1"
        uploader.upload()
    remember(site, uploader.url)

    last = uploader.request.response_headers
    file_id = int(last["lockbox-file-id"])
    assert last["content-location"] == f"/files/{file_id}"
    assert_stored(site, alice.token, file_id, content)
    multipart = requests.post(
        site.url + "/upload",
        headers={"Authorization": f"Bearer {alice.token}"},
        files={"inputFile": ("multipart.bin", content)},
        timeout=30,
    )
    assert multipart.status_code == 201, multipart.text
    assert multipart.json()["sha256"] == sha256(content)
    listed = {item["id"]: item for item in listing(site, alice.token)}
    assert listed[file_id]["filename"] == "tuspy.bin"
    assert listed[file_id]["size"] == len(content)
    assert listed[file_id]["sha256"] == multipart.json()["sha256"]


def test_tuspy_resumes_from_the_offset_the_server_reports(site, alice, source):
    path, content = source(600_000, seed=2)
    with tuspy(site, alice.token, path, upload_checksum=True) as first:
        first.upload(stop_at=250_000)
    url = remember(site, first.url)
    assert offset_of(url) == 250_000

    with tuspy(site, alice.token, path, url=url, upload_checksum=True) as second:
        assert second.offset == 250_000
        second.upload()

    file_id = int(second.request.response_headers["lockbox-file-id"])
    assert_stored(site, alice.token, file_id, content)
    assert [item["id"] for item in listing(site, alice.token)] == [file_id]


def test_interrupted_patch_keeps_what_arrived_and_tuspy_resumes_there(
    site, alice, source
):
    path, content = source(500_000, seed=3)
    url = create(site, alice.token, len(content))
    interrupted_patch(site, url, 0, content, sent=250_000)

    offset = offset_of(url)
    assert 0 < offset <= 250_000
    with tuspy(site, alice.token, path, url=url) as uploader:
        assert uploader.offset == offset
        uploader.upload()

    file_id = int(uploader.request.response_headers["lockbox-file-id"])
    assert_stored(site, alice.token, file_id, content)


def test_interrupted_patch_with_a_checksum_keeps_nothing_of_the_piece(
    site, alice, source
):
    path, content = source(500_000, seed=4)
    url = create(site, alice.token, len(content))
    # The first piece ends inside the second chunk, whose tail the next rebuilds.
    assert patch(url, 0, content[:100_000]).status_code == 204
    piece = content[100_000:400_000]
    interrupted_patch(
        site, url, 100_000, piece, sent=150_000, Upload_Checksum=sha1_header(piece)
    )

    assert offset_of(url) == 100_000
    with tuspy(site, alice.token, path, url=url, upload_checksum=True) as uploader:
        assert uploader.offset == 100_000
        uploader.upload()
    file_id = int(uploader.request.response_headers["lockbox-file-id"])
    assert_stored(site, alice.token, file_id, content)


def test_a_patch_cut_short_is_logged_as_a_lost_connection(site, alice, source):
    _, content = source(500_000, seed=14)
    url = create(site, alice.token, len(content))
    lines = interrupted_patch(site, url, 0, content, sent=250_000)

    offset = offset_of(url)
    assert any(f"{CONNECTION_LOST} {offset}" in line for line in lines), lines
    assert not any("PATCH /uploads/[redacted] 204" in line for line in lines), lines


def test_a_creation_with_upload_cut_short_leaves_nothing(database, site, alice):
    content = random_bytes(500_000, seed=15)
    cut_short(
        site, "POST", "/uploads", content, 250_000, alice.token, Upload_Length=500_000
    )

    # The client never learned the upload's URL: nothing of it may stay, nor
    # hold the account's quota.
    assert stored_files(database, alice) == []


# --- tus-js-client under Node -------------------------------------------------


def test_tus_js_client_uploads_in_pieces_off_the_chunk_boundary(site, alice, source):
    path, content = source(600_000, seed=5)
    report = node_upload(
        site.url + "/uploads",
        alice.token,
        path,
        retryDelays=[0, 200, 500],
        metadata={"filename": "node.bin"},
    )
    assert report["outcome"] == "success", report["error"]
    remember(site, report["url"])

    assert statuses(report) == [201] + [204] * 6  # ceil(600,000 / 100,003)
    assert report["contentLocation"] == f"/files/{report['fileId']}"
    assert_stored(site, alice.token, report["fileId"], content)
    [item] = listing(site, alice.token)
    assert (item["id"], item["filename"]) == (report["fileId"], "node.bin")


def test_tus_js_client_resumes_an_aborted_upload_from_its_url(site, alice, source):
    path, content = source(700_000, seed=6)
    endpoint = site.url + "/uploads"
    first = node_upload(endpoint, alice.token, path, abortAt=0.3)
    assert first["outcome"] == "aborted", first["error"]
    url = remember(site, first["url"])
    assert 0.3 * len(content) <= first["bytesAccepted"] < len(content)
    assert offset_of(url) == first["bytesAccepted"]

    second = node_upload(
        endpoint, alice.token, path, uploadUrl=url, retryDelays=[0, 200]
    )
    assert second["outcome"] == "success", second["error"]
    assert second["url"] == url
    [resumed, *pieces] = second["requests"]
    assert (resumed["method"], resumed["status"]) == ("HEAD", 200)
    assert pieces[0]["sentOffset"] == str(first["bytesAccepted"])
    assert_stored(site, alice.token, second["fileId"], content)
    assert [item["id"] for item in listing(site, alice.token)] == [second["fileId"]]


def test_wrong_checksum_is_refused_with_460_and_the_offset_stays(site, alice, source):
    path, content = source(500_000, seed=7)
    endpoint = site.url + "/uploads"
    first = node_upload(endpoint, alice.token, path, abortAt=0.3)
    assert first["outcome"] == "aborted", first["error"]
    url = remember(site, first["url"])
    offset = first["bytesAccepted"]

    piece = content[offset : offset + PIECE]
    wrong = patch(url, offset, piece, Upload_Checksum=sha1_header(piece[::-1]))
    assert wrong.status_code == 460, wrong.text
    assert offset_of(url) == offset

    second = node_upload(endpoint, alice.token, path, uploadUrl=url)
    assert second["outcome"] == "success", second["error"]
    assert_stored(site, alice.token, second["fileId"], content)


def test_tus_js_client_abort_with_terminate_removes_the_upload(
    database, site, alice, source
):
    path, _ = source(600_000, seed=8)
    report = node_upload(
        site.url + "/uploads",
        alice.token,
        path,
        abortAt=0.3,
        terminate=True,
        retryDelays=[0, 200],
    )
    assert report["outcome"] == "terminated", report["error"]
    url = remember(site, report["url"])
    assert report["requests"][-1] == {
        "method": "DELETE",
        "sentOffset": None,
        "status": 204,
        "offset": None,
    }

    assert head(url).status_code == 404
    assert head(url, alice.token).status_code == 404
    assert patch(url, report["bytesAccepted"], b"more").status_code == 404
    assert listing(site, alice.token) == []
    assert stored_files(database, alice) == []


# --- who may touch an upload ----------------------------------------------------


def test_another_users_token_on_an_upload_url_answers_404(site, alice, bob, source):
    path, content = source(300_000, seed=9)
    with tuspy(site, alice.token, path) as uploader:
        uploader.upload(stop_at=PIECE)
    url = remember(site, uploader.url)

    answers = {
        "HEAD": head(url, bob.token),
        "PATCH": patch(url, PIECE, content[PIECE:], bob.token),
        "DELETE": delete(url, bob.token),
    }
    assert {method: r.status_code for method, r in answers.items()} == {
        "HEAD": 404,
        "PATCH": 404,
        "DELETE": 404,
    }
    # Just what a key that opens nothing gets: bob learns nothing.
    made_up = f"{site.url}/uploads/{secrets.token_urlsafe(24)}"
    assert answers["PATCH"].json() == patch(made_up, PIECE, b"x", bob.token).json()
    assert answers["DELETE"].json() == delete(made_up, bob.token).json()
    assert offset_of(url) == PIECE
    assert listing(site, bob.token) == []


def test_a_made_up_upload_key_answers_404(site, alice):
    for key in (secrets.token_urlsafe(24), "not-a-key"):
        url = f"{site.url}/uploads/{key}"
        for token in (None, alice.token):
            assert head(url, token).status_code == 404
            assert patch(url, 0, b"bytes", token).status_code == 404
            assert delete(url, token).status_code == 404


# --- expiry ---------------------------------------------------------------------


def test_an_idle_upload_answers_410_once_expired_and_tuspy_cannot_resume_it(
    database, expiring_site, source
):
    owner = account(database, expiring_site)
    path, content = source(400_000, seed=10)
    with tuspy(expiring_site, owner.token, path) as uploader:
        uploader.upload(stop_at=PIECE)
    url = remember(expiring_site, uploader.url)
    assert "Upload-Expires" in head(url).headers

    wait_for_expiry(url)

    assert head(url).status_code == 410
    assert patch(url, PIECE, content[PIECE:]).status_code == 410
    with pytest.raises(TusCommunicationError) as refused:
        with tuspy(expiring_site, owner.token, path, url=url) as uploader:
            uploader.upload()
    assert refused.value.status_code == 410
    assert delete(url, owner.token).status_code == 410


def test_tus_js_client_resuming_an_expired_upload_fails_cleanly(
    database, expiring_site, source
):
    owner = account(database, expiring_site)
    path, _ = source(400_000, seed=11)
    first = node_upload(expiring_site.url + "/uploads", owner.token, path, abortAt=0.25)
    assert first["outcome"] == "aborted", first["error"]
    url = remember(expiring_site, first["url"])

    wait_for_expiry(url)

    # No endpoint: tus-js-client may resume, never start a new upload.
    report = node_upload(None, owner.token, path, uploadUrl=url, retryDelays=[0])
    assert report["outcome"] == "error"
    assert report["error"]["status"] == 410
    assert statuses(report) == [410]
    assert listing(expiring_site, owner.token) == []


# --- the log --------------------------------------------------------------------


def test_the_server_log_holds_no_upload_key_and_no_token(
    database, site, alice, bob, source
):
    path, content = source(300_000, seed=12)
    with tuspy(site, alice.token, path) as uploader:
        uploader.upload()
    report = node_upload(site.url + "/uploads", alice.token, path, abortAt=0.3)
    interrupted = create(site, alice.token, len(content))
    interrupted_patch(site, interrupted, 0, content, sent=150_000)
    keys = [key_of(uploader.url), key_of(report["url"]), key_of(interrupted)]
    assert head(uploader.url, bob.token).status_code == 404
    assert patch(report["url"], 0, b"x", alice.token).status_code == 409
    files = requests.get(site.url + "/files", params={"token": alice.token}, timeout=30)
    assert files.status_code == 200
    # Once the last request's line is there, the log has caught up.
    marker = uuid.uuid4().hex
    last = requests.head(
        interrupted,
        headers={**tus_headers(alice.token), "X-Request-ID": marker},
        timeout=30,
    )
    assert last.status_code == 200
    logged(site, marker, "HEAD /uploads/[redacted] 200")

    log = site.output_so_far()
    for secret in [*keys, alice.token, bob.token]:
        assert secret not in log
    assert "Traceback" not in log


# --- an upload outlives its token -------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def upload_begun_with_a_short_lived_token(database, tmp_path_factory):
    """A third of an upload, sent with a token that lives 2 s (12 s with the
    leeway), on a server of its own; the rest is the last test's.

    Begun as soon as the module starts on a database, so that the token's
    twelve seconds pass while the other tests run, not in a sleep.
    """
    content = random_bytes(450_000, seed=13)
    path = tmp_path_factory.mktemp("stale") / "source.bin"
    path.write_bytes(content)
    with live_site(database, TOKEN_TTL_SECONDS=TOKEN_TTL_SECONDS) as server:
        owner = account(database, server)
        with tuspy(server, owner.token, path) as uploader:
            uploader.upload(stop_at=150_000)
        yield SimpleNamespace(
            server=server,
            owner=owner,
            url=remember(server, uploader.url),
            path=path,
            content=content,
        )


def test_an_upload_outlives_the_token_it_began_with(
    database, upload_begun_with_a_short_lived_token
):
    begun = upload_begun_with_a_short_lived_token
    server, expired = begun.server, begun.owner.token
    deadline = time.monotonic() + TOKEN_TTL_SECONDS + LEEWAY_SECONDS + 5
    while True:
        files = requests.get(
            server.url + "/files",
            headers={"Authorization": f"Bearer {expired}"},
            timeout=30,
        )
        if files.status_code == 401:
            break
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.25)
    assert files.json()["message"] == "Token expired"

    # The key alone...
    with tuspy(server, None, begun.path, url=begun.url) as by_key:
        assert by_key.offset == 150_000
        by_key.upload(stop_at=300_000)
    # ...and the key with the expired token, which tuspy sends on every request.
    with tuspy(
        server, expired, begun.path, url=begun.url, upload_checksum=True
    ) as with_token:
        assert with_token.offset == 300_000
        with_token.upload()

    file_id = int(with_token.request.response_headers["lockbox-file-id"])
    fresh = sign_in(server, begun.owner.name)
    server.secrets += [fresh["token"], fresh["refresh_token"]]
    assert_stored(server, fresh["token"], file_id, begun.content)
    assert [item["id"] for item in listing(server, fresh["token"])] == [file_id]
