"""Fixtures: an app on a fresh SQLite file and on a fresh MariaDB database."""

import base64
import os
import time
import uuid

import jwt
import pytest
import sqlalchemy as sa

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


@pytest.fixture(scope="session")
def mysql_database():
    """A MariaDB database made for this test session and dropped after it."""
    name = f"lockbox_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(MYSQL_SERVER_URL, connect_args={"binary_prefix": True})
    try:
        with engine.connect() as connection:
            connection.execute(
                sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            )
    except sa.exc.OperationalError as error:
        engine.dispose()
        message = f"MariaDB is not reachable at {MYSQL_SERVER_URL}: {error.orig}"
        if REQUIRE_MYSQL:
            pytest.fail(message)
        pytest.skip(message)
    yield f"{MYSQL_SERVER_URL}/{name}"
    with engine.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "mysqlclient", "mariadbconnector"])
def database_url(request, tmp_path):
    """Each test that touches the database runs on SQLite and on MariaDB, the
    latter through both drivers: mysqlclient (mysql://) and MariaDB
    Connector/Python (mariadb+mariadbconnector://)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lockbox.db'}"
    url = request.getfixturevalue("mysql_database")
    if request.param == "mariadbconnector":
        url = url.replace("mysql://", "mariadb+mariadbconnector://", 1)
    return url


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


@pytest.fixture
def app_settings():
    """Settings a test module may override (e.g. a small MAX_CONTENT_LENGTH)."""
    return {}


@pytest.fixture
def app(database_url, app_settings):
    """The application under test."""
    app = make_app(database_url, **app_settings)
    yield app
    empty_tables(app)


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A runner for the app's click commands."""
    return app.test_cli_runner()


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


@pytest.fixture
def auth(app, client):
    """Helpers to create users and get tokens."""
    return AuthActions(app, client)


@pytest.fixture
def token(auth):
    """A valid token for the user alice."""
    auth.create_user()
    return auth.token()


@pytest.fixture
def server(app, auth, database_url):
    """gunicorn serving the app on the test database, with alice signed up."""
    from live_server import LiveServer

    auth.create_user()
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url}
    with LiveServer(env, threads=8) as live:
        yield live


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


@pytest.fixture(scope="module")
def sqlite_site(tmp_path_factory):
    """gunicorn on a fresh SQLite database with the user alice (id 1), per module."""
    from live_server import LiveServer

    url = f"sqlite:///{tmp_path_factory.mktemp('site') / 'lockbox.db'}"
    app = make_app(url)
    actions = AuthActions(app, app.test_client())
    actions.create_user("alice")
    with LiveServer({"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url}) as server:
        server.alice_version = actions.token_version("alice")
        yield server
    empty_tables(app)


def expired_token(user_id="1"):
    """A correctly signed access token that expired an hour ago."""
    past = int(time.time()) - 3600
    return make_token({"sub": str(user_id), "iat": past - 60, "exp": past})
