"""Fixtures: an app on a fresh SQLite file and on a fresh MariaDB database."""

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

import two_factor
from harness.mariadb import DatabaseUnreachable, scratch_database
from harness.server import LiveServer
from helpers import (
    BIG,
    CHROMIUM,
    FREQUENT_SIGN_INS,
    LAUNCH_ARGS,
    MYSQL_SERVER_URL,
    REQUIRE_MYSQL,
    SECRET_KEY,
    AuthActions,
    DescribedAnswers,
    empty_tables,
    make_app,
    random_bytes,
    uploaded,
)
from totp import START, Clock


@pytest.fixture(scope="session")
def mysql_database():
    """A MariaDB database made for this test session and dropped after it."""
    try:
        with scratch_database(MYSQL_SERVER_URL, "lockbox_test") as url:
            yield url
    except DatabaseUnreachable as error:
        if REQUIRE_MYSQL:
            pytest.fail(str(error))
        pytest.skip(str(error))


DATABASES = ["sqlite", "mysqlclient", "mariadbconnector"]


def pytest_generate_tests(metafunc):
    """Every test that uses the database runs on each of DATABASES, but for
    those marked ``one_database`` (they never touch it): SQLite alone."""
    if "database_url" in metafunc.fixturenames:
        one = metafunc.definition.get_closest_marker("one_database") is not None
        backends = DATABASES[:1] if one else DATABASES
        metafunc.parametrize("database_url", backends, indirect=True)


@pytest.fixture
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


@pytest.fixture
def app_settings():
    """Settings a test module may override (e.g. a small MAX_CONTENT_LENGTH)."""
    return {}


@pytest.fixture
def app(database_url, app_settings):
    """The application under test; every answer it gives in the test is
    checked against its own API description."""
    app = make_app(database_url, **app_settings)
    answers = DescribedAnswers(app)
    yield app
    empty_tables(app)
    answers.assert_agree()


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A runner for the app's click commands."""
    return app.test_cli_runner()


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
    auth.create_user()
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url}
    with LiveServer(env, threads=8) as live:
        yield live


@pytest.fixture(scope="module")
def sqlite_site(tmp_path_factory):
    """gunicorn on a fresh SQLite database with the user alice (id 1), per module.
    Its senders look every second and may send to 127.0.0.1, so that a test's
    webhook receiver hears within seconds (nothing is sent without webhooks)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('site') / 'lockbox.db'}"
    app = make_app(url)
    actions = AuthActions(app, app.test_client())
    actions.create_user("alice")
    env = {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": url,
        "WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "NOTIFY_POLL_SECONDS": "1",
        **FREQUENT_SIGN_INS,
    }
    with LiveServer(env) as server:
        server.alice_version = actions.token_version("alice")
        yield server
    empty_tables(app)


@pytest.fixture
def big_file(client, token) -> tuple[int, bytes]:
    """Alice's file of three chunks and five bytes (with CHUNK_SIZE 4096)."""
    content = random_bytes(BIG, seed=7)
    return uploaded(client, token, content, "big.bin")["id"], content


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, per module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install the chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab."""
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def clock(monkeypatch):
    """two_factor's clock, fixed at totp.START until a test moves it."""
    fixed = Clock(START)
    monkeypatch.setattr(two_factor, "now", lambda: fixed.at)
    return fixed
