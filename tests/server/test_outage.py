"""The database goes away under a running server, and comes back.

A private MariaDB server (its own data directory and port) serves gunicorn with
a few workers. The database is stopped mid-run, cleanly (SIGTERM) or hard
(SIGKILL): every request must answer at once with 503, an upload in flight must
leave nothing visible, and once the database is back the same worker processes
serve again, with every file acknowledged before the outage intact.
"""

import hashlib
import json
import os
import re
import select
import socket
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from harness.mariadb import MariaDBInstance, server_programs
from harness.server import LiveServer
from helpers import (
    PASSWORD,
    REQUIRE_MYSQL,
    SECRET_KEY,
    SHARED_LIMITS,
    AuthActions,
    basic_auth,
    bearer,
    chunk_health,
    download_sha256,
    make_app,
    sign_in,
)
from models import db

pytestmark = pytest.mark.slow

KIB = 1024
MIB = 1024 * KIB
BOUNDARY = "lockbox-outage-boundary"
# Small chunks, so that an upload in flight has committed chunk rows early on.
CHUNK_SIZE = 64 * KIB
# Generous: the machine is shared. A 503 that waited on a timeout would take longer.
PROMPT_SECONDS = 10
RECOVERY_SECONDS = 20
UNAVAILABLE = {"message": "Database unavailable"}
HEALTH_UNAVAILABLE = {
    "status": "unavailable",
    "database": "unavailable",
    "message": "Database unavailable",
}
DRIVERS = {"mysqlclient": "mysql://", "mariadbconnector": "mariadb+mariadbconnector://"}

# Seconds each 503 took, and until the app served again, per stop and driver;
# printed after the module (visible with pytest -s).
LATENCIES: dict[str, list[float]] = {}
RECOVERIES: dict[str, float] = {}
IN_FLIGHT: dict[str, int | None] = {}


@pytest.fixture(scope="module")
def mariadb():
    """A MariaDB server of this module's own, deleted afterwards."""
    if server_programs() is None:
        message = "mariadbd and mariadb-install-db are needed for the outage tests"
        if REQUIRE_MYSQL:
            pytest.fail(message)
        pytest.skip(message)
    with MariaDBInstance() as instance:
        yield instance
    for name, seconds in sorted(LATENCIES.items()):
        print(
            f"\n{name}: 503 in max {max(seconds) * 1000:.0f} ms, "
            f"median {sorted(seconds)[len(seconds) // 2] * 1000:.0f} ms "
            f"({len(seconds)} requests); upload in flight: "
            f"{IN_FLIGHT.get(name) or 'connection closed'}; serving again "
            f"{RECOVERIES.get(name, float('nan')):.2f} s after the restart"
        )


class Site:
    """A fresh database on the private server, with alice, and how to serve it."""

    def __init__(self, instance: MariaDBInstance, driver: str):
        self.instance = instance
        self.name = f"lockbox_outage_{uuid.uuid4().hex[:12]}"
        self.url = instance.url.replace("mysql://", DRIVERS[driver], 1)
        self.url += f"/{self.name}"
        self.env = {
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": self.url,
            "CHUNK_SIZE": str(CHUNK_SIZE),
        }
        admin = sa.create_engine(instance.url)
        with admin.connect() as connection:
            connection.execute(
                sa.text(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4")
            )
        admin.dispose()
        # The app in this process runs `files gc` and checks the rows directly.
        self.app = make_app(self.url)
        AuthActions(self.app, self.app.test_client()).create_user("alice")

    def scalar(self, sql: str):
        """One value from a query on the site's database."""
        with self.app.app_context():
            try:
                return db.session.execute(sa.text(sql)).scalar()
            finally:
                db.session.remove()

    def close(self):
        """Drop the database, when the server is up to do it."""
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()
        if not self.instance.running:
            return
        admin = sa.create_engine(self.instance.url)
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.name}`"))
        admin.dispose()


@pytest.fixture(params=list(DRIVERS))
def site(request, mariadb):
    """A site on the private server, through each MySQL driver in turn."""
    # A test that failed during an outage may have left the server stopped.
    mariadb.start()
    site = Site(mariadb, request.param)
    yield site
    site.close()


def upload(server, token, name: str, content: bytes) -> requests.Response:
    """POST /upload with one file."""
    return requests.post(
        server.url + "/upload",
        headers=bearer(token),
        files={"inputFile": (name, content, "application/octet-stream")},
        timeout=60,
    )


class SlowUpload:
    """A multipart upload sent a piece at a time over a raw socket.

    Between pieces it looks whether the server has answered already (a 503 does
    not wait for the rest of the body), so it never blocks on a server that
    stopped reading.
    """

    def __init__(self, port: int, token: str, filename: str, size: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="inputFile"; '
            f'filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        request = (
            f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(head) + size + len(tail)}\r\n\r\n"
        ).encode()
        self.sock.sendall(request + head)
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def answered(self) -> bool:
        """True once the server has sent something (or closed the connection)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def send(self, size: int) -> bool:
        """Send ``size`` more file bytes; False when the server no longer listens."""
        if self.closed or self.answered():
            return False
        try:
            self.sock.sendall(os.urandom(size))
        except OSError:
            self.closed = True
            return False
        return True

    def response(self, timeout: float) -> tuple[int | None, bytes]:
        """The server's status and body, or (None, b"") for a closed connection."""
        self.sock.settimeout(timeout)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                data = self.sock.recv(65536)
                if not data:
                    return None, b""
                received += data
            head, _, body = received.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            while len(body) < length:
                data = self.sock.recv(65536)
                if not data:
                    break
                body += data
            return status, body
        except ConnectionError:
            return None, b""
        finally:
            self.sock.close()


def wait_for(condition, timeout: float, what: str):
    """Poll ``condition`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout} s")


def outage_requests(tokens: dict, file_id: int):
    """Every kind of request, as (label, method, path, keyword arguments)."""
    access = bearer(tokens["token"])
    refresh = bearer(tokens["refresh_token"])
    small_file = {"inputFile": ("during.txt", b"written during the outage")}
    return [
        ("login", "GET", "/login", {"headers": basic_auth("alice", PASSWORD)}),
        ("list", "GET", "/files", {"headers": access}),
        ("metadata", "GET", f"/files/{file_id}", {"headers": access}),
        ("download", "GET", f"/files/{file_id}/download", {"headers": access}),
        ("delete", "DELETE", f"/files/{file_id}", {"headers": access}),
        ("page", "GET", "/", {"headers": access}),
        ("upload", "POST", "/upload", {"headers": access, "files": small_file}),
        ("refresh", "POST", "/refresh", {"headers": refresh}),
        ("healthz", "GET", "/healthz", {}),
    ]


@pytest.mark.parametrize("stop", ["stop", "kill"])
def test_database_outage_answers_503_and_recovers(site, stop):
    instance = site.instance
    with LiveServer({**site.env, **SHARED_LIMITS}, workers=3) as server:
        tokens = sign_in(server)
        token = tokens["token"]

        # Files acknowledged before the outage: they must all survive it.
        acknowledged = {}
        for index, size in enumerate([1, 200 * KIB, 3 * MIB + 17]):
            content = os.urandom(size)
            response = upload(server, token, f"before-{index}.bin", content)
            assert response.status_code == 201, response.text
            acknowledged[response.json()["id"]] = hashlib.sha256(content).hexdigest()
        # The workers take pooled connections, which the outage will break.
        for _ in range(12):
            assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
        master_pid, workers = server.process.pid, sorted(server.worker_pids())
        assert len(workers) == 3

        # An upload in flight: some of its chunks committed, most still to come.
        with SlowUpload(server.port, token, "in-flight.bin", 64 * MIB) as in_flight:
            assert in_flight.send(MIB)
            in_flight_id = wait_for(
                lambda: site.scalar(
                    "SELECT f.id FROM stored_file f"
                    " JOIN file_chunk c ON c.file_id = f.id"
                    " WHERE f.complete = 0 GROUP BY f.id HAVING COUNT(*) >= 8"
                ),
                30,
                "the upload in flight committing chunks",
            )

            getattr(instance, stop)()
            assert not instance.running

            # It stops: a 503 or a dropped connection, never a 201.
            started = time.monotonic()
            while time.monotonic() - started < 30 and in_flight.send(256 * KIB):
                time.sleep(0.02)
            status, body = in_flight.response(timeout=PROMPT_SECONDS)
        assert status in (503, None), (body, server.output_so_far())
        if status == 503:
            assert json.loads(body) == UNAVAILABLE
        name = f"{stop} {site.url.split(':', 1)[0]}"
        IN_FLIGHT[name] = status

        # Every request answers at once with a 503, whichever worker takes it;
        # a DELETE refused now must not have deleted anything afterwards.
        latencies = LATENCIES.setdefault(name, [])
        kept_id = min(acknowledged)
        for _ in range(3):
            for label, method, path, kwargs in outage_requests(tokens, kept_id):
                begun = time.monotonic()
                response = requests.request(
                    method, server.url + path, timeout=(5, 30), **kwargs
                )
                elapsed = time.monotonic() - begun
                latencies.append(elapsed)
                assert elapsed < PROMPT_SECONDS, (label, elapsed)
                assert response.status_code == 503, (label, response.text)
                if label == "healthz":
                    assert response.json() == HEALTH_UNAVAILABLE
                else:
                    assert response.json() == UNAVAILABLE, label
                    assert int(response.headers["Retry-After"]) > 0

        # The database comes back on the same data directory and port...
        instance.start()
        restarted = time.monotonic()
        wait_for(
            lambda: (
                requests.get(server.url + "/healthz", timeout=30).status_code == 200
            ),
            RECOVERY_SECONDS,
            "the app serving again",
        )
        RECOVERIES[name] = time.monotonic() - restarted
        # ... and the same processes serve again, without another 503.
        for _ in range(12):
            response = requests.get(
                server.url + "/files",
                headers=bearer(token),
                timeout=30,
            )
            assert response.status_code == 200, response.text
        assert server.process.pid == master_pid
        assert server.process.poll() is None
        assert sorted(server.worker_pids()) == workers

        # Exactly the acknowledged files, byte for byte; nothing of the upload.
        listed = {item["id"] for item in response.json()["items"]}
        assert listed == set(acknowledged)
        assert "in-flight.bin" not in response.text
        missing = requests.get(
            f"{server.url}/files/{in_flight_id}",
            headers=bearer(token),
            timeout=30,
        )
        assert missing.status_code == 404
        for file_id, digest in acknowledged.items():
            assert download_sha256(server, token, file_id)[:2] == (200, digest)

        # Writes work again too.
        content = os.urandom(MIB + 1)
        response = upload(server, token, "after.bin", content)
        assert response.status_code == 201, response.text
        after_id = response.json()["id"]
        assert download_sha256(server, token, after_id) == (
            200,
            hashlib.sha256(content).hexdigest(),
            len(content),
        )

    # The unfinished upload is garbage: `files gc` removes it and its chunks.
    result = site.app.test_cli_runner().invoke(args=["files", "gc", "--idle", "0"])
    assert result.exit_code == 0, result.output
    assert chunk_health(site.app) == {
        "chunks_without_a_finished_file": 0,
        "unfinished_files": 0,
    }
    assert site.scalar("SELECT COUNT(*) FROM stored_file") == len(acknowledged) + 1

    # Answers were plain 503s: no traceback, no 500 in gunicorn's or the app's log.
    assert "Traceback" not in server.output, server.output
    assert not re.search(r'" 500 ', server.output), server.output
    assert "Database unavailable" in server.output


def test_a_download_in_flight_is_cut_short_not_left_hanging(site):
    instance = site.instance
    content = os.urandom(48 * MIB)
    with LiveServer(site.env) as server:
        token = sign_in(server)["token"]
        response = upload(server, token, "big.bin", content)
        assert response.status_code == 201, response.text
        file_id = response.json()["id"]
        url = f"{server.url}/files/{file_id}/download"
        with requests.get(
            url, headers=bearer(token), stream=True, timeout=30
        ) as download:
            assert download.status_code == 200
            pieces = download.iter_content(MIB)
            received = len(next(pieces))
            # The server is now blocked sending; the database dies under it.
            instance.kill()
            started = time.monotonic()
            # The body ends early with an error, which a client can tell from a
            # finished download (the Content-Length is not reached)...
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                for piece in pieces:
                    received += len(piece)
            elapsed = time.monotonic() - started
        assert received < len(content)
        assert elapsed < PROMPT_SECONDS
        # ... and said so in the app's log, with the file's id.
        wait_for(
            lambda: f"Download of file {file_id} cut short" in server.output_so_far(),
            PROMPT_SECONDS,
            "the log line about the cut download: " + server.output_so_far()[-3000:],
        )
        # Once the database is back, the whole file downloads again.
        instance.start()
        wait_for(
            lambda: (
                requests.get(server.url + "/healthz", timeout=30).status_code == 200
            ),
            RECOVERY_SECONDS,
            "the app serving again",
        )
        assert download_sha256(server, token, file_id) == (
            200,
            hashlib.sha256(content).hexdigest(),
            len(content),
        )
