"""Health check, request ids, request logs, JSON logs."""

import json
import logging

import pytest

from app import create_app
from helpers import SECRET_KEY, empty_tables, make_app


def test_healthz_says_ok_without_a_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_does_not_answer():
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": "mysql://root@127.0.0.1:1/nothing",
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"] == "unavailable"
    assert body["message"] == "Database unavailable"


@pytest.mark.one_database
def test_livez_says_ok_without_a_token(client):
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["X-Request-ID"]


def test_livez_is_200_while_the_database_does_not_answer():
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": "mysql://root@127.0.0.1:1/nothing",
        }
    )
    client = app.test_client()
    assert client.get("/healthz").status_code == 503
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.one_database
def test_a_request_id_is_made_and_returned(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert len(first) == 32 and first != second


@pytest.mark.one_database
def test_a_sane_incoming_request_id_is_kept(client):
    response = client.get("/healthz", headers={"X-Request-ID": "edge-42.a:b"})
    assert response.headers["X-Request-ID"] == "edge-42.a:b"


@pytest.mark.one_database
@pytest.mark.parametrize("bad", ["x" * 65, "with space", "new\\nline", "<script>"])
def test_an_unsafe_incoming_request_id_is_replaced(client, bad):
    response = client.get("/healthz", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"] != bad
    assert len(response.headers["X-Request-ID"]) == 32


def test_each_request_is_logged_with_its_id_and_no_query(client, caplog, token):
    caplog.set_level(logging.INFO, logger="app")
    # The line is written once the answer has gone out, when the server closes it.
    client.get(f"/files?token={token}", headers={"X-Request-ID": "trace-1"}).close()
    lines = [r for r in caplog.records if r.getMessage().startswith("GET /files 200")]
    assert len(lines) == 1
    assert lines[0].request_id == "trace-1"
    assert token not in caplog.text


def test_json_log_lines_when_asked(database_url, capsys):
    app = make_app(database_url, LOG_FORMAT="json")
    try:
        app.test_client().get("/healthz", headers={"X-Request-ID": "json-1"}).close()
        lines = [
            json.loads(line)
            for line in capsys.readouterr().err.splitlines()
            if line.startswith("{")
        ]
        request_lines = [line for line in lines if line.get("request_id") == "json-1"]
        assert request_lines
        assert request_lines[0]["message"].startswith("GET /healthz 200")
        assert request_lines[0]["levelname"] == "INFO"
    finally:
        empty_tables(app)
