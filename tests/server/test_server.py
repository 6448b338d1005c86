"""The real server: gunicorn on 127.0.0.1, real HTTP, streamed bodies."""

import contextlib
import hashlib
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import requests

from harness.server import LiveServer, proc_status
from helpers import (
    BOUNDARY,
    MIB,
    PASSWORD,
    SECRET_KEY,
    SHARED_LIMITS,
    AuthActions,
    bearer,
    make_app,
    multipart_pieces,
    opened_chunks,
    raw_exchange,
    seeded_slice,
    sign_in,
    stream_upload,
    streaming_upload,
    uploaded_answer,
)
from models import FileChunk, StoredFile, db

pytestmark = pytest.mark.slow

# Streaming 1 MiB chunks grows a worker by a few MiB; holding a 30 MiB download in
# memory grows it by about 60 MiB, which a 64 MiB bound would let through.
MAX_DOWNLOAD_GROWTH = 16 * MIB


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
        digest = hashlib.sha256()
        count = 0
        for _, chunk in opened_chunks(body["id"]):
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


@contextlib.contextmanager
def stalled_upload(server, token, size, stall_after):
    """An upload whose client stops sending after ``stall_after`` file bytes and
    waits; leaving the block sends the rest. Yields a dict that then holds the
    upload's status, body and the file's sha256."""
    outcome = {}
    with streaming_upload(server, token, size, seed=7) as upload:
        connection, pieces, digest = upload
        sent = 0
        for piece, _ in pieces:
            connection.send(piece)
            sent += len(piece)
            if sent >= stall_after:
                break
        time.sleep(1)  # the server stores what it got, then waits for more
        yield outcome
        for piece, _ in pieces:
            connection.send(piece)
        outcome["status"], outcome["body"] = uploaded_answer(connection)
        outcome["sha256"] = digest.hexdigest()


def open_transactions(app) -> int:
    """How many InnoDB transactions are open on the app's database right now."""
    with app.app_context():
        count = db.session.execute(
            db.text(
                "SELECT COUNT(*) FROM information_schema.innodb_trx t "
                "JOIN information_schema.processlist p "
                "ON p.id = t.trx_mysql_thread_id WHERE p.db = DATABASE() "
                "AND p.id <> CONNECTION_ID()"
            )
        ).scalar_one()
        db.session.remove()
        return count


def test_a_stalled_upload_does_not_block_other_writers(app, server, database_url):
    alice = sign_in(server)
    other = sign_in(server)
    with stalled_upload(server, alice["token"], 6 * MIB, 2 * MIB + 512) as outcome:
        if not database_url.startswith("sqlite"):
            # No transaction stays open while the server waits on the client.
            assert open_transactions(app) == 0
        started = time.monotonic()
        # Every kind of writer goes ahead at once: an upload, a refresh, a
        # sign-out (each would wait 30 s for SQLite's write lock, then fail).
        status, body, _ = stream_upload(server, alice["token"], MIB, seed=9)
        assert status == 201, body
        refreshed = requests.post(
            server.url + "/refresh", headers=bearer(other["refresh_token"]), timeout=10
        )
        assert refreshed.status_code == 200
        signed_out = requests.post(
            server.url + "/logout", headers=bearer(other["token"]), timeout=10
        )
        assert signed_out.status_code == 204
        assert time.monotonic() - started < 10
    assert outcome["status"] == 201, outcome["body"]
    assert outcome["body"]["sha256"] == outcome["sha256"]


def failures_before_the_first_429(server, username, attempts=60) -> int:
    """Fail to sign in as ``username`` up to ``attempts`` times; how many
    answers were 401 before the first 429."""
    for number in range(attempts):
        response = requests.get(
            server.url + "/login", auth=(username, "wrong password"), timeout=30
        )
        if response.status_code == 429:
            return number
        assert response.status_code == 401, response.text
    return attempts


@pytest.fixture
def site_env(tmp_path) -> dict:
    """The environment of a server on a fresh SQLite database with alice: the
    server settings tested with it do not depend on the database."""
    url = f"sqlite:///{tmp_path / 'lockbox.db'}"
    AuthActions(make_app(url), None).create_user()
    return {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url}


def test_the_shipped_server_settings_hold_the_sign_in_limit(site_env):
    # gunicorn.conf.py as shipped, with the default in-memory limit store.
    unset = {"WEB_CONCURRENCY": None, "RATELIMIT_STORAGE_URI": None}
    with LiveServer({**site_env, **unset}, shipped=True) as live:
        assert failures_before_the_first_429(live, "alice") == 10
        assert (
            "Sign-in limits are counted in memory: one worker" in live.output_so_far()
        )


def test_several_workers_share_the_sign_in_limit_through_redis(site_env):
    env = {**site_env, **SHARED_LIMITS, "WEB_CONCURRENCY": "3"}
    with LiveServer(env, shipped=True) as live:
        assert len(live.worker_pids()) == 3
        username = f"redis-{uuid.uuid4().hex[:12]}"
        assert failures_before_the_first_429(live, username) == 10


def test_several_workers_with_limits_in_memory_refuse_to_start(site_env):
    env = {**site_env, "RATELIMIT_STORAGE_URI": "memory://", "WEB_CONCURRENCY": "3"}
    with pytest.raises(RuntimeError) as refused:
        with LiveServer(env, shipped=True):
            pass
    assert "cannot start 3 workers" in str(refused.value)
    assert "RATELIMIT_STORAGE_URI=redis://" in str(refused.value)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /files?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /files HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 9000 + b"\r\n\r\n", 431),
        (b"GET /files HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
        (b"GET /files HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ],
    ids=["long-url", "long-header", "bad-header-name", "bad-version"],
)
def test_answers_from_gunicorn_itself_are_json_errors(
    sqlite_site, request_bytes, status
):
    head, body = raw_exchange(sqlite_site.port, request_bytes)
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    assert b"Content-Type: application/json" in head
    message = json.loads(body)["message"]
    assert isinstance(message, str) and message


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


CONCURRENT_REFRESHES = 8


def test_concurrent_refreshes_of_one_token_let_exactly_one_through(server):
    pair = sign_in(server)
    barrier = threading.Barrier(CONCURRENT_REFRESHES)

    def refresh(_):
        barrier.wait()
        response = requests.post(
            server.url + "/refresh",
            headers=bearer(pair["refresh_token"]),
            timeout=60,
        )
        return response.status_code, response.json()

    with ThreadPoolExecutor(CONCURRENT_REFRESHES) as pool:
        answers = list(pool.map(refresh, range(CONCURRENT_REFRESHES)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] + [401] * (CONCURRENT_REFRESHES - 1), answers
    assert all(body == {"message": "Token revoked"} for s, body in answers if s == 401)
    assert "Traceback" not in server.output_so_far()


def test_tabs_renewing_at_once_all_come_back_signed_in(server):
    # A browser restoring its tabs renews them all at the same moment with
    # the one renewal cookie: none of them may look like a stolen copy.
    signed_in = requests.post(
        server.url + "/login",
        data={"username": "alice", "password": PASSWORD, "remember": "1"},
        headers={"Accept": "text/html"},
        allow_redirects=False,
        timeout=30,
    )
    assert signed_in.status_code == 303
    cookie = signed_in.cookies["lockbox_renew"]
    barrier = threading.Barrier(CONCURRENT_REFRESHES)

    def renew(_):
        barrier.wait()
        return requests.get(
            server.url + "/renew?next=/",
            cookies={"lockbox_renew": cookie},
            headers={"Accept": "text/html"},
            allow_redirects=False,
            timeout=60,
        )

    with ThreadPoolExecutor(CONCURRENT_REFRESHES) as pool:
        answers = list(pool.map(renew, range(CONCURRENT_REFRESHES)))
    places = [answer.headers["Location"].partition("?")[0] for answer in answers]
    assert places == ["/"] * CONCURRENT_REFRESHES, places
    successors = {
        jwt.decode(a.cookies["lockbox_renew"], options={"verify_signature": False})[
            "jti"
        ]
        for a in answers
    }
    assert len(successors) == 1
    for answer in answers:
        token = answer.headers["Location"].partition("token=")[2].partition("&")[0]
        assert (
            requests.get(
                server.url + "/files", headers=bearer(token), timeout=30
            ).status_code
            == 200
        )
    assert "Traceback" not in server.output_so_far()


def test_each_request_is_logged_once_with_its_id_and_no_secret(sqlite_site):
    # The shipped gunicorn.conf.py: gunicorn's access log is off, the app writes
    # one line per request, after the answer went out, with the request id.
    site = sqlite_site
    token = requests.get(
        site.url + "/login", auth=("alice", PASSWORD), timeout=10
    ).json()["token"]
    asked = [
        ("page", {"params": {"token": token}}, "/"),
        ("bearer", {"headers": bearer(token)}, "/files"),
        ("basic", {"auth": ("alice", PASSWORD)}, "/login"),
    ]
    for request_id, options, path in asked:
        headers = {**options.pop("headers", {}), "X-Request-ID": f"log-{request_id}"}
        answer = requests.get(site.url + path, headers=headers, timeout=10, **options)
        assert answer.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "log-basic" not in site.output_so_far():
        time.sleep(0.05)
    output = site.output_so_far()
    for request_id, _, path in asked:
        lines = [line for line in output.splitlines() if f"[log-{request_id}]" in line]
        assert len(lines) == 1, (request_id, lines)
        assert f"GET {path} 200 " in lines[0]
    assert token not in output and token.split(".")[2] not in output
    assert '" 200 ' not in output  # no gunicorn access line ("GET / HTTP/1.1" 200)


def test_control_characters_cannot_forge_a_log_line(sqlite_site):
    """A path, header or name with a line break in it stays on its own line,
    escaped: nobody can write a line of their own into the log."""
    site = sqlite_site
    forged = "FORGED 2026-01-01 00:00:00,000 INFO [x] app: GET / 200"
    path = "/x%0a" + forged.replace(" ", "%20") + "%0d%0a%1b[31m"
    head, _ = raw_exchange(
        site.port,
        f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: forging\r\n\r\n".encode(),
    )
    assert head.startswith(b"HTTP/1.1 404 "), head
    requests.get(
        site.url + "/login",
        auth=("alice\nFORGED sign-in", "x"),
        headers={"X-Request-ID": "forging-name"},
        timeout=10,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "forging-name" not in site.output_so_far():
        time.sleep(0.05)
    output = site.output_so_far()
    assert not [line for line in output.splitlines() if line.startswith("FORGED")]
    assert "\x1b" not in output and "\r" not in output
    [line] = [line for line in output.splitlines() if "[forging]" in line]
    assert "GET /x\\nFORGED 2026-01-01" in line and "\\r\\n\\x1b[31m 404 " in line
