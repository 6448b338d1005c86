"""What the tests share: settings, users and tokens, and HTTP helpers.

Fixtures live in conftest.py; everything a test module imports comes from
here (test modules never import each other).
"""

import base64
import contextlib
import functools
import hashlib
import http.client
import io
import os
import random
import re
import socket
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import jsonschema_rs
import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import event
from werkzeug.security import generate_password_hash

import sealing
import storage
from app import create_app
from harness.server import ROOT
from models import FileChunk, StoredFile, User, db

# A test key: long and varied enough to pass the same checks production keys do.
SECRET_KEY = "test-signing-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOP"
# The storage key every test app and server seals with (encryption at rest is
# on throughout the suite, as it is by default); a fixed key, so that servers
# and apps on the same database agree.
STORAGE_KEY = bytes(range(32))
STORAGE_KEYS = "*test-1:" + base64.b64encode(STORAGE_KEY).decode()
os.environ.setdefault("STORAGE_KEYS", STORAGE_KEYS)
MYSQL_SERVER_URL = os.environ.get(
    "LOCKBOX_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"
)
REQUIRE_MYSQL = (
    os.environ.get("LOCKBOX_REQUIRE_MYSQL") == "1" or os.environ.get("CI") == "true"
)
PASSWORD = "correct horse battery staple"
# Several gunicorn workers must count sign-in failures in one shared store
# (gunicorn.conf.py refuses to start them otherwise).
SHARED_LIMITS = {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379"}
# Every sign-in counts against the limits, successful ones too: a server that
# a whole module signs in to far more often than a person would gets room for
# it. The limits themselves are tested with their defaults.
FREQUENT_SIGN_INS = {
    "LOGIN_LIMIT_PER_USERNAME": "10000 per minute",
    "LOGIN_LIMIT_PER_ADDRESS": "10000 per minute",
}


def make_app(database_url, **overrides):
    """An app for tests, with its tables created."""
    settings = {
        "TESTING": True,
        "SECRET_KEY": SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": database_url,
        **overrides,
    }
    app = create_app(settings)
    with app.app_context():
        db.create_all()
    return app


def empty_tables(app):
    """Remove every row: the next test on the shared MariaDB database starts clean."""
    with app.app_context():
        db.session.remove()
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def basic_auth(username, password):
    """An Authorization header for HTTP Basic credentials."""
    raw = f"{username}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


class AuthActions:
    """Create users and sign them in."""

    def __init__(self, app, client):
        self._app = app
        self._client = client

    def create_user(self, username="alice", password=PASSWORD) -> int:
        """Add a user directly in the database; return its id."""
        with self._app.app_context():
            user = User(username=username, password_hash=quick_hash(password))
            db.session.add(user)
            db.session.commit()
            return user.id

    def token_version(self, username="alice") -> str:
        """The account's current token version, which its tokens must carry."""
        with self._app.app_context():
            return db.session.execute(
                db.select(User.token_version).filter_by(username=username)
            ).scalar_one()

    def login(self, username="alice", password=PASSWORD):
        """GET /login with Basic auth; the response."""
        return self._client.get("/login", headers=basic_auth(username, password))

    def token(self, username="alice", password=PASSWORD) -> str:
        """A fresh access token for an existing user."""
        response = self.login(username, password)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]


@functools.cache
def quick_hash(password: str) -> str:
    """A scrypt hash of ``password`` with a small work factor, for the users
    tests put straight into the database: checking the app's default one
    costs about 0.1 s, twice for most tests. Sign-in checks it like any other
    (the hash says its parameters); the app's own hashing keeps the default
    (test_auth.py)."""
    return generate_password_hash(password, method="scrypt:1024:8:1")


def bearer(token: str, **headers) -> dict:
    """Request headers carrying ``token`` as a Bearer credential, plus any extra."""
    return {"Authorization": f"Bearer {token}", **headers}


def token_claims(**changes) -> dict:
    """Claims like Lockbox's access tokens for user 1; a value of None drops one.

    ``ver`` must be the account's token version for the token to be accepted.
    """
    now = int(time.time())
    claims = {
        "sub": "1",
        "iat": now,
        # A day: tokens made when the tests are collected must not expire
        # before a slow run reaches them.
        "exp": now + 24 * 3600,
        "jti": uuid.uuid4().hex,
        "iss": "lockbox",
        "typ": "access",
        "ver": 0,
        "fam": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def make_token(claims=None, key=SECRET_KEY, algorithm="HS256", drop=(), headers=None):
    """A token like Lockbox's access tokens, with some claims changed or dropped."""
    payload = token_claims(**(claims or {}))
    for name in drop:
        payload.pop(name)
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def expired_token(user_id="1"):
    """A correctly signed access token that expired an hour ago."""
    past = int(time.time()) - 3600
    return make_token({"sub": str(user_id), "iat": past - 60, "exp": past})


def sign_in(server, username: str = "alice", password: str = PASSWORD) -> dict:
    """GET /login with Basic auth over HTTP (the tests' password by default): the
    token pair."""
    response = requests.get(
        server.url + "/login", auth=(username, password), timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def download_sha256(server, token: str, file_id: int) -> tuple[int, str, int]:
    """Stream a download: (status, sha256 of the body, its length)."""
    digest, length = hashlib.sha256(), 0
    url = f"{server.url}/files/{file_id}/download"
    headers = {"Authorization": f"Bearer {token}"}
    with requests.get(url, headers=headers, stream=True, timeout=120) as r:
        for piece in r.iter_content(1024 * 1024):
            digest.update(piece)
            length += len(piece)
        return r.status_code, digest.hexdigest(), length


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send raw request bytes to 127.0.0.1:``port`` and read until the server
    closes: the answer's head and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


# --- uploads and what they stored -----------------------------------------

MIB = 1024 * 1024
CHUNK = 4096
BIG = 3 * CHUNK + 5
SMALL_CHUNKS = pytest.mark.parametrize(
    "app_settings", [{"CHUNK_SIZE": CHUNK}], ids=["chunk4096"]
)
NOT_FOUND = {"message": "File not found"}
METADATA_FIELDS = {
    "id",
    "filename",
    "description",
    "content_type",
    "size",
    "sha256",
    "created_at",
    "expires_at",
}
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def form_upload(
    client, token, content=b"hello", filename="hello.txt", description=None, **kw
):
    """POST a file the way the upload form does (token in the URL); the response."""
    data = {"inputFile": (io.BytesIO(content), filename)}
    if description is not None:
        data["description"] = description
    return client.post(
        f"/upload?token={token}", data=data, content_type="multipart/form-data", **kw
    )


def raw_upload(client, token, body: bytes, boundary="XyZ"):
    """POST a hand-built multipart body."""
    return client.post(
        f"/upload?token={token}",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def part(name, value: bytes, filename=None, content_type=None, boundary="XyZ"):
    """One part of a multipart body."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def end(boundary="XyZ"):
    """The closing boundary of a multipart body."""
    return f"--{boundary}--\r\n".encode()


def opened_chunks(file_id) -> list[tuple[int, bytes]]:
    """A file's chunk rows as (seq, bytes), opened with the app's storage
    keys (in an app context), in order, as committed now."""
    db.session.rollback()  # a fresh snapshot, not the last read's
    keys = sealing.keys()
    return [
        (seq, bytes(keys.open_chunk(file_id, seq, key_id, data)))
        for seq, key_id, data in db.session.execute(
            db.select(FileChunk.seq, FileChunk.key_id, FileChunk.data)
            .filter_by(file_id=file_id)
            .order_by(FileChunk.seq)
        )
    ]


def stored_bytes(app, file_id) -> bytes:
    """Reassemble a file from its chunk rows."""
    with app.app_context():
        return b"".join(data for _, data in opened_chunks(file_id))


def row_counts(app) -> tuple[int, int]:
    """How many file rows and chunk rows exist."""
    with app.app_context():
        file_rows = db.session.execute(db.select(db.func.count(StoredFile.id))).scalar()
        chunk_rows = db.session.execute(
            db.select(db.func.count()).select_from(FileChunk)
        )
        return file_rows, chunk_rows.scalar()


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Reproducible random content of ``size`` bytes."""
    return random.Random(seed).randbytes(size)


def multipart_upload(
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
    response = multipart_upload(client, token, content, filename, **kw)
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
    """Add a file and its 4096-byte chunk rows straight into the database, and
    recount the owner's finished files as the app does; its id."""
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
        storage.recount_files(owner_id)
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


@contextlib.contextmanager
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


# --- real HTTP uploads --------------------------------------------------------

BOUNDARY = "lockbox-test-boundary"


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


@contextlib.contextmanager
def streaming_upload(server, token, size, seed=1, filename="big.bin"):
    """An upload of a ``size``-byte file with Content-Length, its headers and
    the first part head sent: yields (connection, the rest of the pieces as
    (bytes, None), the file's running sha256); never all in memory."""
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
        yield connection, pieces, digest


def uploaded_answer(connection) -> tuple[int, dict]:
    """The status and JSON body an upload was answered with."""
    response = connection.getresponse()
    return response.status, requests.models.complexjson.loads(response.read())


def stream_upload(server, token, size, seed=1, stop_after=None, filename="big.bin"):
    """Send a file of ``size`` bytes with Content-Length, never all in memory.

    With ``stop_after`` the connection is dropped after that many file bytes.
    Returns (status, json body or None, sha256 of the file bytes).
    """
    with streaming_upload(server, token, size, seed, filename) as upload:
        connection, pieces, digest = upload
        sent = 0
        for piece, _ in pieces:
            if stop_after is not None and sent >= stop_after:
                return None, None, digest.hexdigest()
            connection.send(piece)
            sent += len(piece)
        status, body = uploaded_answer(connection)
    return status, body, digest.hexdigest()


def listing(server, token) -> list[dict]:
    """All of a user's files, through GET /files."""
    response = requests.get(
        server.url + "/files",
        params={"per_page": 200},
        headers=bearer(token),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def chunk_health(app) -> dict:
    """Counts that must be zero when nothing was lost or left behind."""
    with app.app_context():
        complete = db.select(StoredFile.id).where(StoredFile.complete.is_(True))
        counts = {
            "chunks_without_a_finished_file": db.session.execute(
                db.select(db.func.count())
                .select_from(FileChunk)
                .where(FileChunk.file_id.not_in(complete))
            ).scalar(),
            "unfinished_files": db.session.execute(
                db.select(db.func.count(StoredFile.id)).where(
                    StoredFile.complete.is_(False)
                )
            ).scalar(),
        }
        db.session.remove()
    return counts


# --- the API description, checked against every answer ----------------------


class DescribedAnswers:
    """Checks every answer an app gives against its own /openapi.json.

    Registered on the test apps (conftest.py), so that each request any test
    makes is a check that the description and the app agree: the status must
    be described for the operation, and a JSON body must match the described
    schema. Disagreements are collected and reported when the test ends.
    """

    def __init__(self, app):
        self.app = app
        self.problems: list[str] = []
        self._spec = None
        app.after_request(self._check)

    def _operation(self, path: str, method: str) -> dict | None:
        """The described operation for this route, if any."""
        if self._spec is None:
            from openapi import build_spec

            self._spec = build_spec(self.app)
        return self._spec["paths"].get(path, {}).get(method)

    def _response(self, operation: dict, status: int) -> dict | None:
        """The described response for a status, its $ref resolved."""
        response = operation["responses"].get(str(status))
        if response is not None and "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[1]
            response = self._spec["components"]["responses"][name]
        return response

    def _check(self, response):
        """Compare one answer with the description (after_request hook)."""
        from flask import request

        rule = request.url_rule
        method = request.method.lower()
        if rule is None or rule.endpoint == "static" or method in ("head", "options"):
            return response
        if response.status_code == 500:
            # A bug: never described, and the tests that cause one on purpose
            # check the answer themselves.
            return response
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        operation = self._operation(path, method)
        where = f"{request.method} {path} {response.status_code}"
        if operation is None:
            self.problems.append(f"{where}: the operation is not described")
            return response
        described = self._response(operation, response.status_code)
        if described is None:
            self.problems.append(f"{where}: the status is not described")
            return response
        schema = described.get("content", {}).get("application/json", {}).get("schema")
        if schema and response.mimetype == "application/json":
            root = {**schema, "components": self._spec["components"]}
            validator = jsonschema_rs.validator_for(root)
            for error in validator.iter_errors(response.get_json()):
                self.problems.append(f"{where}: {error.message}")
        return response

    def assert_agree(self) -> None:
        """Fail the test if any answer departed from the description."""
        assert not self.problems, "\n".join(self.problems)


# --- resumable uploads (tus) --------------------------------------------------

OFFSET_STREAM = "application/offset+octet-stream"


def tus_headers(token=None, **extra) -> dict:
    """Tus-Resumable: 1.0.0, ``token`` as a Bearer credential (if any), and
    ``extra`` headers written with underscores for dashes (Upload_Length=5)."""
    headers = {"Tus-Resumable": "1.0.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    for name, value in extra.items():
        headers[name.replace("_", "-")] = str(value)
    return headers


def tus_metadata(**fields: str) -> str:
    """An Upload-Metadata value: ``name base64(value)`` pairs."""
    return ",".join(
        f"{name} {base64.b64encode(value.encode()).decode()}"
        for name, value in fields.items()
    )


def create_upload(client, token, length=None, body=None, **headers):
    """POST /uploads for ``length`` bytes (None: deferred), sending ``body`` as
    the first piece if given; the response."""
    if length is None:
        headers.setdefault("Upload_Defer_Length", 1)
    else:
        headers.setdefault("Upload_Length", length)
    if body is not None:
        headers.setdefault("Content_Type", OFFSET_STREAM)
    return client.post("/uploads", data=body, headers=tus_headers(token, **headers))


def upload_path(response) -> str:
    """The path of the upload a 201 from POST /uploads names in Location."""
    assert response.status_code == 201, response.get_json()
    # http://localhost/uploads/<key>: everything from the third slash on.
    return "/" + response.headers["Location"].split("/", 3)[3]


def new_upload(client, token, length=None, **kw) -> str:
    """Create an upload that must be accepted; its path."""
    return upload_path(create_upload(client, token, length, **kw))


def send_piece(client, path, offset, data: bytes, token=None, **headers):
    """PATCH ``data`` at ``offset``; the response."""
    headers.setdefault("Content_Type", OFFSET_STREAM)
    return client.patch(
        path, data=data, headers=tus_headers(token, Upload_Offset=offset, **headers)
    )


def upload_offset(client, path) -> int:
    """The offset HEAD reports for an upload that must exist."""
    response = client.head(path, headers=tus_headers())
    assert response.status_code == 200
    return int(response.headers["Upload-Offset"])


def tus_upload(client, token, content: bytes, sizes=(CHUNK - 1,)) -> int:
    """Send ``content`` as a tus upload in pieces of ``sizes`` (cycled); the
    id of the file it became."""
    path = new_upload(client, token, len(content))
    offset, piece = 0, 0
    while True:
        size = sizes[piece % len(sizes)]
        response = send_piece(client, path, offset, content[offset : offset + size])
        assert response.status_code == 204, response.get_json()
        offset, piece = offset + size, piece + 1
        if offset >= len(content):
            return int(response.headers["Lockbox-File-Id"])


def upload_row(app, path):
    """The ResumableUpload row of an upload's path (None once gone)."""
    from models import ResumableUpload
    from upload_keys import key_hash

    key = path.rsplit("/", 1)[1]
    with app.app_context():
        return db.session.execute(
            db.select(ResumableUpload).filter_by(key_hash=key_hash(key))
        ).scalar_one_or_none()


def set_expiry(app, path, seconds_from_now: float) -> None:
    """Move an upload's expiry to ``seconds_from_now`` (negative: the past)."""
    from models import ResumableUpload
    from upload_keys import key_hash

    key = path.rsplit("/", 1)[1]
    with app.app_context():
        db.session.execute(
            db.update(ResumableUpload)
            .filter_by(key_hash=key_hash(key))
            .values(
                expires_at=datetime.fromtimestamp(time.time() + seconds_from_now, UTC)
            )
        )
        db.session.commit()


def chunk_rows(app, file_id) -> list[tuple[int, bytes]]:
    """A file's chunk rows as (seq, bytes), opened, in order."""
    with app.app_context():
        return opened_chunks(file_id)


def upload_count(app) -> int:
    """How many resumable_upload rows exist."""
    from models import ResumableUpload

    with app.app_context():
        return db.session.execute(
            db.select(db.func.count()).select_from(ResumableUpload)
        ).scalar()


def slow_clients(port: int, count: int) -> list[socket.socket]:
    """Connections that begin a request and never finish it: half stop in the
    headers, half in the body of POST /login (slowloris)."""
    sockets = []
    for number in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if number % 2:
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: lockbox\r\nX-Slow: ")
        else:
            sock.sendall(
                b"POST /login HTTP/1.1\r\nHost: lockbox\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
        sockets.append(sock)
    return sockets


def time_to_sign_in(url: str, timeout: float) -> float | None:
    """Seconds a Basic-auth sign-in took, or None when it did not answer in time."""
    started = time.monotonic()
    try:
        response = requests.get(
            url + "/login", auth=("alice", PASSWORD), timeout=timeout
        )
    except requests.Timeout:
        return None
    assert response.status_code == 200, response.text
    return time.monotonic() - started


# --- a cluster's instances, over HTTP ------------------------------------------


def post_file(server_url, token, content, name="f.bin", timeout=60):
    """POST /upload of ``content`` as a form; the answer."""
    return requests.post(
        server_url + "/upload",
        files={"inputFile": (name, content)},
        headers=bearer(token),
        timeout=timeout,
    )


def download_digest(url, token, file_id, timeout=300) -> tuple[int, str]:
    """Status and SHA-256 of a file downloaded in a stream."""
    digest = hashlib.sha256()
    with requests.get(
        f"{url}/files/{file_id}/download",
        headers=bearer(token),
        stream=True,
        timeout=timeout,
    ) as answer:
        for piece in answer.iter_content(MIB):
            digest.update(piece)
        return answer.status_code, digest.hexdigest()


def live_upload(server, token, name, content, content_type=None) -> int:
    """Upload a file to a live server through the API; the new file's id."""
    part = (name, content) if content_type is None else (name, content, content_type)
    answer = requests.post(
        server.url + "/upload",
        files={"inputFile": part},
        headers=bearer(token),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def live_share(server, token, file_id, **settings) -> dict:
    """A new share link to a file on a live server; the answer's JSON."""
    answer = requests.post(
        f"{server.url}/files/{file_id}/shares",
        json=settings,
        headers=bearer(token),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for the name ``host`` alone, good for an
    hour, written to ``folder``: the paths of its certificate and its key
    (a client trusts it with SSL_CERT_FILE=<certificate>)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{host}.pem", folder / f"{host}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


# Debian's Chromium, headless, for the browser tests (Playwright's own
# browser download is not used).
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"


def screenshot(page, name):
    """Keep a picture of the page for people to look at (test-artifacts/)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# --- the README's walk-through ---------------------------------------------

# What the README writes, and what stands for it here.
README_URL = "http://127.0.0.1:5000"
README_USER, README_PASSWORD = "admin", "3vH2k9Xq0cWb7YtL"
# The sections run, in order, and how many of each one's shell blocks (the
# token section's second block is the server's command line).
SECTIONS = {
    "## Walk-through with curl": 2,
    "## Share a file": 1,
    "## API tokens for scripts": 1,
    "## Ask someone for files": 1,
    "## Share several files": 1,
}


def shell_blocks(readme: str, heading: str) -> list[str]:
    """The ```sh blocks of one section of the README, in order."""
    start = readme.index(f"\n{heading}\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else len(readme)]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def walk_through() -> str:
    """The README's blocks as one script that stops at the first failure."""
    readme = (ROOT / "README.md").read_text()
    blocks = []
    for heading, count in SECTIONS.items():
        found = shell_blocks(readme, heading)
        assert len(found) >= count, heading
        blocks += found[:count]
    return "set -euo pipefail\n" + "\n".join(blocks)


# What the walk-through's commands answer along the way.
README_ANSWERS = (
    '{"message":"Token missing"}',
    '{"message":"Invalid token"}',
    "file report.pdf uploaded successfully",
    '"has_password":true',
    '{"message":"This link was revoked by its owner"}',
    '{"message":"Token lacks the shares:write scope"}',
    '{"message":"file report.pdf sent to admin"}',
    '{"message":"This upload request was closed by its owner"}',
)


def run_readme_walk_through(url: str, password: str, directory: Path) -> str:
    """Run the README's walk-through in ``directory`` against ``url``, signed
    in as admin with ``password`` (where the README shows its example one);
    what it printed. Needs report.pdf and photo.jpg in ``directory``."""
    script = walk_through().replace(README_URL, url).replace(README_PASSWORD, password)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(directory)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
