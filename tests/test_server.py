"""The real server: gunicorn on 127.0.0.1, real HTTP, streamed bodies."""

import contextlib
import hashlib
import http.client
import random
import time

import pytest
import requests
from live_server import LiveServer, proc_status, sign_in

from conftest import SECRET_KEY
from models import FileChunk, StoredFile, db

MIB = 1024 * 1024
BOUNDARY = "lockbox-test-boundary"

pytestmark = pytest.mark.slow


def multipart_pieces(size: int, seed: int, digest, filename="big.bin"):
    """A multipart body for a ``size``-byte file, produced 1 MiB at a time."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="inputFile"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = (
        f"\r\n--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="description"\r\n\r\n'
        f"streamed\r\n--{BOUNDARY}--\r\n"
    ).encode()
    yield head, len(head) + size + len(tail)
    rng = random.Random(seed)
    left = size
    while left:
        piece = rng.randbytes(min(MIB, left))
        digest.update(piece)
        left -= len(piece)
        yield piece, None
    yield tail, None


def stream_upload(server, token, size, seed=1, stop_after=None, filename="big.bin"):
    """Send a file of ``size`` bytes with Content-Length, never all in memory.

    With ``stop_after`` the connection is dropped after that many file bytes.
    Returns (status, json body or None, sha256 of the file bytes).
    """
    digest = hashlib.sha256()
    pieces = multipart_pieces(size, seed, digest, filename)
    first, length = next(pieces)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    with contextlib.closing(connection):
        connection.putrequest("POST", f"/upload?token={token}")
        connection.putheader(
            "Content-Type", f"multipart/form-data; boundary={BOUNDARY}"
        )
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        connection.send(first)
        sent = 0
        for piece, _ in pieces:
            if stop_after is not None and sent >= stop_after:
                return None, None, digest.hexdigest()
            connection.send(piece)
            sent += len(piece)
        response = connection.getresponse()
        body = response.read()
    return response.status, requests.models.complexjson.loads(body), digest.hexdigest()


def test_tutorial_flow_over_http(server):
    token = sign_in(server)["token"]
    missing = requests.get(server.url + "/", timeout=10)
    assert missing.status_code == 401
    assert missing.json() == {"message": "Token missing"}
    page = requests.get(server.url + "/", params={"token": token}, timeout=10)
    assert page.status_code == 200
    assert 'name="inputFile"' in page.text
    uploaded = requests.post(
        server.url + "/upload",
        params={"token": token},
        files={"inputFile": ("hello.txt", b"hello")},
        data={"description": "first"},
        timeout=10,
    )
    assert uploaded.status_code == 201
    assert uploaded.json()["message"] == "file hello.txt uploaded successfully"


def test_hundred_mebibyte_upload_keeps_worker_memory_bounded(app, server):
    token = sign_in(server)["token"]
    [worker] = server.worker_pids()
    idle = proc_status(worker, "VmRSS")
    status, body, sha256 = stream_upload(server, token, 100 * MIB)
    peak = proc_status(worker, "VmHWM")
    assert status == 201, body
    assert body["size"] == 100 * MIB
    assert body["sha256"] == sha256
    # The tutorial's code grew the worker by ~270 MB for this upload.
    assert peak - idle < 64 * MIB, f"worker grew by {(peak - idle) / MIB:.1f} MiB"
    with app.app_context():
        chunks = db.session.execute(
            db.select(FileChunk.data)
            .filter_by(file_id=body["id"])
            .order_by(FileChunk.seq)
        ).scalars()
        digest = hashlib.sha256()
        count = 0
        for chunk in chunks:
            digest.update(chunk)
            count += 1
        assert digest.hexdigest() == sha256
        assert count == 100


def test_client_disconnect_mid_upload_leaves_nothing(app, server):
    token = sign_in(server)["token"]
    [worker] = server.worker_pids()
    status, _, _ = stream_upload(server, token, 20 * MIB, stop_after=8 * MIB)
    assert status is None
    # The worker notices the drop, stores what it had queued, then deletes it all.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with app.app_context():
            rows = db.session.execute(db.select(db.func.count(StoredFile.id))).scalar()
            chunks = db.session.execute(
                db.select(db.func.count()).select_from(FileChunk)
            ).scalar()
            db.session.remove()
        if rows == 0 and chunks == 0:
            break
        time.sleep(0.1)
    assert (rows, chunks) == (0, 0)
    # The same worker (not a replacement) goes on serving, uploads included.
    assert requests.get(server.url + "/", params={"token": token}, timeout=10).ok
    status, body, sha256 = stream_upload(server, token, 3 * MIB, seed=5)
    assert status == 201 and body["sha256"] == sha256
    assert server.worker_pids() == [worker]


def test_chunked_body_over_the_limit_is_refused(app, auth, database_url):
    auth.create_user()
    env = {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database_url,
        "MAX_CONTENT_LENGTH": str(3 * MIB),
    }
    with LiveServer(env) as live:
        token = sign_in(live)["token"]

        def body():
            digest = hashlib.sha256()
            for piece, _ in multipart_pieces(6 * MIB, 2, digest):
                yield piece

        # A generator body makes requests use Transfer-Encoding: chunked.
        response = requests.post(
            live.url + "/upload",
            params={"token": token},
            data=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            timeout=60,
        )
        assert response.status_code == 413
        assert "limit" in response.json()["message"]
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(StoredFile.id))).scalar() == 0
        assert (
            db.session.execute(
                db.select(db.func.count()).select_from(FileChunk)
            ).scalar()
            == 0
        )


def test_client_leaving_mid_download_keeps_the_worker_healthy(server):
    token = sign_in(server)["token"]
    status, body, sha256 = stream_upload(server, token, 24 * MIB, seed=3)
    assert status == 201
    url = f"{server.url}/files/{body['id']}/download"
    for _ in range(3):
        with requests.get(url, params={"token": token}, stream=True, timeout=30) as r:
            assert r.status_code == 200
            next(r.iter_content(2 * MIB))
        # Leaving the block closes the connection after 2 of 24 MiB.
    digest = hashlib.sha256()
    with requests.get(url, params={"token": token}, stream=True, timeout=60) as r:
        for piece in r.iter_content(MIB):
            digest.update(piece)
    assert digest.hexdigest() == sha256
