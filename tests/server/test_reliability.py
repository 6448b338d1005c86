"""Nothing lost: many clients at once, several app instances, killed workers.

These run the real app under gunicorn on 127.0.0.1 against MariaDB (the test
session's own database), through both drivers. Each is bounded in time and in
requests. The database outage has a module of its own (test_outage.py).
"""

import math
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from harness.server import LiveServer
from helpers import (
    PASSWORD,
    SECRET_KEY,
    SHARED_LIMITS,
    AuthActions,
    bearer,
    chunk_health,
    download_sha256,
    empty_tables,
    listing,
    make_app,
    sign_in,
    stream_upload,
)
from models import FileChunk, db

KIB, MIB = 1024, 1024 * 1024
CLIENTS = 32
USERS = ("ann", "ben", "cat", "dan")

pytestmark = pytest.mark.slow


@pytest.fixture(params=["mysqlclient", "mariadbconnector"])
def mariadb_url(request, mysql_database):
    """The session's MariaDB database, through one driver or the other."""
    if request.param == "mariadbconnector":
        return mysql_database.replace("mysql://", "mariadb+mariadbconnector://", 1)
    return mysql_database


@pytest.fixture
def site(mariadb_url):
    """The app (for direct looks at the database) with four users signed up."""
    app = make_app(mariadb_url)
    auth = AuthActions(app, app.test_client())
    for name in USERS:
        auth.create_user(name)
    yield app
    empty_tables(app)


def sizes_from_1_kib_to_20_mib(count: int) -> list[int]:
    """``count`` sizes spread evenly on a log scale, odd byte counts included."""
    low, high = math.log(KIB), math.log(20 * MIB)
    return [
        int(math.exp(low + (high - low) * i / (count - 1))) + (i % 3)
        for i in range(count)
    ]


def test_32_clients_upload_and_download_at_once(site, mariadb_url):
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": mariadb_url, **SHARED_LIMITS}
    sizes = sizes_from_1_kib_to_20_mib(CLIENTS)
    assert sizes[0] >= KIB and max(sizes) <= 20 * MIB + 2
    with LiveServer(env, workers=3) as server:
        tokens = {name: sign_in(server, name)["token"] for name in USERS}

        def client(number: int) -> dict:
            user = USERS[number % len(USERS)]
            token, name = tokens[user], f"client-{number:02d}.bin"
            status, body, sha256 = stream_upload(
                server, token, sizes[number], seed=number, filename=name
            )
            assert status == 201, body
            got = download_sha256(server, token, body["id"])
            return {
                "user": user,
                "id": body["id"],
                "name": name,
                "body": body,
                "sha256": sha256,
                "download": got,
                "size": sizes[number],
            }

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(client, range(CLIENTS)))
        elapsed = time.monotonic() - started

        for result in results:
            assert result["body"]["size"] == result["size"]
            assert result["body"]["sha256"] == result["sha256"]
            assert result["download"] == (200, result["sha256"], result["size"])
        # Each user's listing is exactly that user's uploads, no more, no less.
        for user in USERS:
            mine = {(r["id"], r["name"], r["size"], r["sha256"])
                    for r in results if r["user"] == user}  # fmt: skip
            listed = {
                (item["id"], item["filename"], item["size"], item["sha256"])
                for item in listing(server, tokens[user])
            }
            assert listed == mine
        assert len({r["id"] for r in results}) == CLIENTS
    assert chunk_health(site) == {
        "chunks_without_a_finished_file": 0,
        "unfinished_files": 0,
    }
    # Every chunk of every file is there, and no more.
    with site.app_context():
        for result in results:
            chunks = db.session.execute(
                db.select(db.func.count())
                .select_from(FileChunk)
                .where(FileChunk.file_id == result["id"])
            ).scalar()
            assert chunks == math.ceil(result["size"] / MIB)
    assert "Traceback" not in server.output
    assert '" 500 ' not in server.output
    print(f"{CLIENTS} clients, {sum(sizes) / MIB:.0f} MiB each way: {elapsed:.1f} s")


@pytest.fixture
def two_instances(site, mariadb_url):
    """Two gunicorn processes on different ports sharing the database and Redis."""
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is not reachable on 127.0.0.1:6379: {error}")
    env = {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": mariadb_url,
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379",
        "LOGIN_LIMIT_PER_USERNAME": "3 per minute",
        # One site: both instances share their counts (and no other test's).
        "RATELIMIT_KEY_PREFIX": f"pair-{uuid.uuid4().hex[:12]}",
    }
    with LiveServer(env) as first, LiveServer(env) as second:
        assert first.port != second.port
        yield first, second


def test_a_file_uploaded_through_one_instance_is_served_by_the_other(two_instances):
    first, second = two_instances
    token = sign_in(first, "ann")["token"]
    status, body, sha256 = stream_upload(
        first, token, 3 * MIB + 5, seed=7, filename="shared.bin"
    )
    assert status == 201, body
    # The token from the first instance is good on the second.
    assert download_sha256(second, token, body["id"]) == (200, sha256, 3 * MIB + 5)
    assert [item["id"] for item in listing(second, token)] == [body["id"]]
    deleted = requests.delete(
        f"{second.url}/files/{body['id']}", headers=bearer(token), timeout=30
    )
    assert deleted.status_code == 204
    gone = requests.get(
        f"{first.url}/files/{body['id']}", headers=bearer(token), timeout=30
    )
    assert gone.status_code == 404


def test_a_token_revoked_through_one_instance_is_refused_by_the_other(
    two_instances,
):
    first, second = two_instances
    token, other = sign_in(first, "ben")["token"], sign_in(second, "ben")["token"]
    assert requests.get(second.url + "/files", headers=bearer(token), timeout=30).ok
    signed_out = requests.post(first.url + "/logout", headers=bearer(token), timeout=30)
    assert signed_out.status_code == 204
    refused = requests.get(second.url + "/files", headers=bearer(token), timeout=30)
    assert refused.status_code == 401
    assert refused.json() == {"message": "Token revoked"}
    # Signing out everywhere through the second reaches tokens the first issued.
    fresh = sign_in(first, "ben")["token"]
    everywhere = requests.post(
        second.url + "/logout?everywhere=1", headers=bearer(other), timeout=30
    )
    assert everywhere.status_code == 204
    for server in (first, second):
        response = requests.get(
            server.url + "/files", headers=bearer(fresh), timeout=30
        )
        assert response.status_code == 401


def test_a_refresh_token_replayed_on_the_other_instance_revokes_the_family(
    two_instances,
):
    first, second = two_instances
    pair = requests.get(first.url + "/login", auth=("cat", PASSWORD), timeout=30)
    refresh_token = pair.json()["refresh_token"]
    rotated = requests.post(
        first.url + "/refresh", headers=bearer(refresh_token), timeout=30
    )
    assert rotated.status_code == 200
    replayed = requests.post(
        second.url + "/refresh", headers=bearer(refresh_token), timeout=30
    )
    assert replayed.status_code == 401
    new_access = rotated.json()["token"]
    refused = requests.get(first.url + "/files", headers=bearer(new_access), timeout=30)
    assert refused.json() == {"message": "Token revoked"}


def test_sign_in_limits_are_shared_through_redis(site, two_instances):
    first, second = two_instances
    # A name of its own, so that no other run's counts in Redis interfere.
    username = f"shared-{uuid.uuid4().hex[:12]}"
    AuthActions(site, site.test_client()).create_user(username)
    statuses = [
        requests.get(
            server.url + "/login", auth=(username, "wrong password"), timeout=30
        ).status_code
        for server in (first, second, first)
    ]
    assert statuses == [401, 401, 401]
    # The limit is 3 a minute, counted across both instances.
    for server in (second, first):
        blocked = requests.get(
            server.url + "/login", auth=(username, PASSWORD), timeout=30
        )
        assert blocked.status_code == 429
        assert "Retry-After" in blocked.headers


def test_a_worker_killed_mid_upload_leaves_nothing_visible_and_gc_cleans_up(
    site, mariadb_url
):
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": mariadb_url}
    with LiveServer(env) as server:
        token = sign_in(server, "dan")["token"]
        [worker] = server.worker_pids()
        with ThreadPoolExecutor(1) as pool:
            upload = pool.submit(stream_upload, server, token, 64 * MIB, 3)
            # Wait until some chunks are in the database, then kill the worker.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with site.app_context():
                    stored = db.session.execute(
                        db.select(db.func.count()).select_from(FileChunk)
                    ).scalar()
                    db.session.remove()
                if stored >= 4:
                    break
                time.sleep(0.05)
            assert stored >= 4, "the upload never reached the database"
            os.kill(worker, signal.SIGKILL)
            with pytest.raises((ConnectionError, OSError)):
                upload.result(timeout=60)
        # gunicorn starts a new worker; the half upload is nowhere to be seen.
        files = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = server.worker_pids()
            if pids and pids != [worker]:
                try:
                    files = listing(server, token)
                    break
                except requests.ConnectionError:
                    pass
            time.sleep(0.1)
        assert files == []
        assert chunk_health(site)["unfinished_files"] == 1
        # files gc removes the unfinished upload and every chunk it wrote.
        result = site.test_cli_runner().invoke(args=["files", "gc", "--idle", "0"])
        assert result.exit_code == 0, result.output
        assert "Removed 1 unfinished uploads" in result.output
        assert chunk_health(site) == {
            "chunks_without_a_finished_file": 0,
            "unfinished_files": 0,
        }
        # The new worker serves uploads as before.
        status, body, sha256 = stream_upload(server, token, 2 * MIB, seed=4)
        assert status == 201 and body["sha256"] == sha256
