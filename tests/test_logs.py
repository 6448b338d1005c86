"""Tokens never reach the logs: the app's, the development server's, gunicorn's."""

import logging

import pytest
import requests

from harness.server import LiveServer
from helpers import PASSWORD, SECRET_KEY
from security import redact


@pytest.mark.parametrize(
    "line, kept",
    [
        (
            '"GET /?token=eyJ.a-b_c HTTP/1.1" 200',
            '"GET /?token=[redacted] HTTP/1.1" 200',
        ),
        ("/upload?x=1&token=abc&y=2", "/upload?x=1&token=[redacted]&y=2"),
        ("Authorization: Bearer eyJ.x.y", "Authorization: Bearer [redacted]"),
        ("authorization: basic YWxpY2U6cHc=", "authorization: basic [redacted]"),
        ("refresh_token=abc", "refresh_token=[redacted]"),
        ("mytoken=visible", "mytoken=visible"),
    ],
)
def test_redact_removes_token_values_and_credentials(line, kept):
    assert redact(line) == kept


@pytest.mark.one_database
def test_development_server_request_log_is_redacted(app, caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("werkzeug").info('"%s" %s', "GET /?token=secret.jwt.value", 200)
    assert "secret.jwt.value" not in caplog.text
    assert "token=[redacted]" in caplog.text


@pytest.mark.one_database
def test_app_log_is_redacted(app, caplog):
    caplog.set_level(logging.INFO)
    app.logger.info("client sent Authorization: Bearer %s", "secret.jwt.value")
    assert "secret.jwt.value" not in caplog.text
    assert "Bearer [redacted]" in caplog.text


@pytest.mark.slow
def test_gunicorn_access_log_is_redacted(app, auth, database_url, tmp_path):
    auth.create_user()
    log = tmp_path / "access.log"
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url}
    # The shipped settings, with the log in a file and the Authorization header in
    # the format, to show that header values are redacted too.
    extra = [
        "-c",
        "gunicorn.conf.py",
        "--access-logfile",
        str(log),
        "--access-logformat",
        '%(h)s "%(r)s" %(s)s "%({authorization}i)s"',
    ]
    with LiveServer(env, extra_args=extra) as server:
        answer = requests.get(
            server.url + "/login", auth=("alice", PASSWORD), timeout=10
        )
        token = answer.json()["token"]
        requests.get(server.url + "/", params={"token": token}, timeout=10)
        requests.get(
            server.url + "/files",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    text = log.read_text()
    assert token not in text
    assert token.split(".")[2] not in text
    assert "token=[redacted]" in text
    assert "Bearer [redacted]" in text
    assert "Basic [redacted]" in text
    assert '"GET /files HTTP/1.1" 200' in text
