"""What the tests share: settings, users and tokens, and HTTP helpers.

Fixtures live in conftest.py; everything a test module imports comes from
here (test modules never import each other).
"""

import base64
import hashlib
import os
import socket
import time
import uuid

import jwt
import requests

from app import create_app
from authentication import hash_password
from models import User, db

# A test key: long and varied enough to pass the same checks production keys do.
SECRET_KEY = "test-signing-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOP"
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
            user = User(username=username, password_hash=hash_password(password))
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
        "exp": now + 600,
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
