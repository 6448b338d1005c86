"""One error shape: JSON {"message": ...} for API clients, a page for browsers."""

import io
import socket
import time

import pytest
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app import create_app
from helpers import (
    PASSWORD,
    SECRET_KEY,
    basic_auth,
    empty_tables,
    make_app,
    make_token,
)
from models import db

BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"
UNREACHABLE_DATABASE = "mysql://root@127.0.0.1:1/nothing"


# --- 404 and 405 -------------------------------------------------------------


@pytest.mark.one_database
def test_unknown_route_is_a_json_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": "Not Found"}


@pytest.mark.one_database
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/login", "GET"), ("GET", "/upload", "POST"), ("PUT", "/", "GET")],
)
def test_wrong_method_is_a_json_405_with_allow(client, method, path, allowed):
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": "Method Not Allowed"}
    methods = {part.strip() for part in response.headers["Allow"].split(",")}
    assert allowed in methods
    assert method not in methods


@pytest.mark.one_database
def test_browser_gets_an_html_error_page(client):
    response = client.get("/no/such/page", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Error 404" in page
    assert "Not Found" in page


@pytest.mark.one_database
def test_an_error_page_says_what_to_do_next_and_leads_back(client):
    page = client.get("/no/such/page", headers={"Accept": BROWSER_ACCEPT})
    text = page.get_data(as_text=True)
    assert '<h1 id="error-title">Not found</h1>' in text
    assert "Check the address, or go back to your files." in text
    assert 'href="/">Go to your files</a>' in text
    # The request id, to quote to an admin, is the one the answer carries.
    assert f"request id <code>{page.headers['X-Request-ID']}</code>" in text


@pytest.mark.one_database
def test_a_signed_in_error_page_leads_back_to_the_files_with_the_token(client):
    token = make_token()
    page = client.get(f"/nowhere?token={token}", headers={"Accept": BROWSER_ACCEPT})
    text = page.get_data(as_text=True)
    assert f'href="/?token={token}">Back to your files</a>' in text


@pytest.mark.one_database
def test_an_upload_over_the_size_limit_says_how_to_make_room(app, client, token):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    page = client.post(
        f"/upload?token={token}",
        data={"inputFile": (io.BytesIO(b"x" * 5000), "big.bin")},
        headers={"Accept": BROWSER_ACCEPT},
    )
    assert page.status_code == 413
    text = page.get_data(as_text=True)
    assert '<h1 id="error-title">Too large</h1>' in text
    assert "Free some space by deleting files you no longer need" in text
    assert "One file may be at most 10.0 GiB." in text


@pytest.mark.one_database
def test_html_error_page_escapes_the_token_it_links_back_with(client):
    response = client.get(
        "/nowhere?token=<script>alert(1)</script>", headers={"Accept": BROWSER_ACCEPT}
    )
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "token=%3Cscript%3Ealert(1)%3C/script%3E" in page


@pytest.mark.one_database
@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "application/json, text/html;q=0.9"],
    ids=["none", "anything", "json", "json-preferred"],
)
def test_api_clients_get_json_errors(client, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.get("/no/such/page", headers=headers)
    assert response.status_code == 404
    assert response.get_json() == {"message": "Not Found"}


@pytest.mark.one_database
def test_browser_gets_an_html_405_with_allow(client):
    response = client.delete("/login", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "405" in response.get_data(as_text=True)
    assert "GET" in response.headers["Allow"]


# --- 500 ---------------------------------------------------------------------


@pytest.fixture
def boom_app(database_url):
    """An app with a /boom view that fails with an unexpected exception."""
    app = make_app(database_url)

    def boom():
        raise RuntimeError("secret detail")

    app.add_url_rule("/boom", view_func=boom)
    yield app
    empty_tables(app)


def test_unexpected_error_is_a_bare_500(boom_app):
    response = boom_app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"message": "Internal Server Error"}


def test_unexpected_error_shows_no_details(boom_app):
    body = boom_app.test_client().get("/boom").get_data(as_text=True)
    assert "Traceback" not in body
    assert "secret detail" not in body
    assert "RuntimeError" not in body


def test_unexpected_error_shows_no_details_to_browsers(boom_app):
    response = boom_app.test_client().get("/boom", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "Internal Server Error" in body
    assert "secret detail" not in body
    assert "Traceback" not in body


def test_unexpected_error_is_logged(boom_app, caplog):
    boom_app.test_client().get("/boom")
    records = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("GET /boom" in r.getMessage() for r in records)
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in records)


# --- database unavailable ----------------------------------------------------


@pytest.fixture
def offline_app():
    """An app whose MySQL server does not answer (nothing listens on port 1)."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": UNREACHABLE_DATABASE,
        }
    )
    yield app
    with app.app_context():
        db.engine.dispose()


def test_unreachable_database_is_a_503(offline_app):
    response = offline_app.test_client().get(
        "/login", headers=basic_auth("alice", PASSWORD)
    )
    assert response.status_code == 503
    assert response.get_json() == {"message": "Database unavailable"}


def test_unreachable_database_says_when_to_retry(offline_app):
    response = offline_app.test_client().get(
        "/login", headers=basic_auth("alice", PASSWORD)
    )
    assert response.headers["Retry-After"].isdigit()
    assert int(response.headers["Retry-After"]) > 0


def test_unreachable_database_shows_no_details(offline_app):
    response = offline_app.test_client().get(
        "/login", headers=basic_auth("alice", PASSWORD)
    )
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    assert "127.0.0.1" not in body
    assert "OperationalError" not in body


def test_unreachable_database_during_token_check_is_a_503(offline_app):
    # A well-formed token reaches the user lookup, which needs the database.
    token = make_token()
    response = offline_app.test_client().get(f"/?token={token}")
    assert response.status_code == 503
    assert response.get_json() == {"message": "Database unavailable"}


@pytest.fixture
def silent_database_port():
    """A port that accepts TCP connections but never speaks, like a frozen host."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["mysql", "mariadb+mariadbconnector"])
def test_a_database_that_never_answers_is_a_prompt_503(silent_database_port, scheme):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": f"{scheme}://root@127.0.0.1:"
            f"{silent_database_port}/nothing",
        }
    )
    started = time.monotonic()
    response = app.test_client().get("/login", headers=basic_auth("alice", PASSWORD))
    elapsed = time.monotonic() - started
    with app.app_context():
        db.engine.dispose()
    assert response.status_code == 503
    assert response.get_json() == {"message": "Database unavailable"}
    # The connect timeout, not the minutes of a TCP timeout or forever.
    assert elapsed < 15


# How drivers report a database that went away, and errors that are bugs instead.
LOST_CONNECTION = [
    InterfaceError("ROLLBACK", {}, Exception("Server has gone away")),
    DBAPIError(
        "SELECT 1", {}, Exception("Lost connection"), connection_invalidated=True
    ),
    DisconnectionError("the pool could not check out a live connection"),
    PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached"),
]
QUERY_BUGS = [
    IntegrityError("INSERT", {}, Exception("Duplicate entry")),
    ProgrammingError("SELEC 1", {}, Exception("syntax error")),
    DBAPIError("SELECT 1", {}, Exception("odd"), connection_invalidated=False),
]


@pytest.fixture
def failing_app(tmp_path):
    """An app with a /fail view that raises the exception put in its config."""
    app = make_app(f"sqlite:///{tmp_path / 'lockbox.db'}")

    def fail():
        raise app.config["FAILURE"]

    app.add_url_rule("/fail", view_func=fail)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    "failure", LOST_CONNECTION, ids=lambda error: type(error).__name__
)
def test_lost_connection_in_any_driver_shape_is_a_503(failing_app, failure):
    failing_app.config["FAILURE"] = failure
    response = failing_app.test_client().get("/fail")
    assert response.status_code == 503
    assert response.get_json() == {"message": "Database unavailable"}
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("failure", QUERY_BUGS, ids=lambda error: type(error).__name__)
def test_database_errors_that_are_bugs_stay_a_500(failing_app, failure):
    failing_app.config["FAILURE"] = failure
    response = failing_app.test_client().get("/fail")
    assert response.status_code == 500
    assert response.get_json() == {"message": "Internal Server Error"}
