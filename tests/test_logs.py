"""Tokens never reach the logs: the app's, the development server's, gunicorn's
(tests/server/test_server.py runs gunicorn)."""

import logging
import threading
import time
import urllib.error
import urllib.request

import pytest
from werkzeug.serving import make_server

from helpers import make_token
from logs import redact


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
        # A personal access token wherever it appears, and a share link's token.
        (
            "GET /files?token=lbx_AbC123dEf456gHi789jKl012mNo345pQr678sTu9vW0xyZ",
            "GET /files?token=[redacted]",
        ),
        (
            "client sent lbx_AbC123dEf456gHi789jKl012mNo345pQr678sTu9vW0xyZ",
            "client sent lbx_[redacted]",
        ),
        (
            "GET /s/Xq3vP0aZbT1sYh2u.Qm9fVh1p3LqW8cZ0xJk2RrT5nD7aBbGgHhEe1F/download",
            "GET /s/[redacted]/download",
        ),
        ("GET /static/style.css 200", "GET /static/style.css 200"),
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


class Collect(logging.Handler):
    """Every record that reaches it, as (logger, message)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's logger and message."""
        self.lines.append((record.name, record.getMessage()))


@pytest.mark.one_database
def test_the_development_servers_own_request_lines_are_dropped(app):
    # werkzeug's own server, as `flask run` starts it: its line for each
    # request (coloured for a 404) never shows beside the app's. A handler on
    # each logger sees what passes the logger's filters.
    seen = Collect()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(seen)
    app.logger.addHandler(seen)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    statuses = []
    try:
        base = f"http://127.0.0.1:{server.port}"
        for path in ("/livez", "/nothing-here", "/?token=secret.jwt.value"):
            try:
                with urllib.request.urlopen(base + path, timeout=10) as answer:
                    statuses.append(answer.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
                error.read()
                error.close()

        def request_lines() -> list[list[str]]:
            """The app's own request lines so far: method, path, status."""
            return sorted(
                message.split()[:3]
                for name, message in seen.lines
                if name == "app" and message.startswith("GET")
            )

        # Each line is written once its answer has gone, on the server's
        # thread; werkzeug's server skips that step when the client has reset
        # the connection by then, so not every line is waited for.
        deadline = time.monotonic() + 5
        while len(request_lines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
        werkzeug.removeHandler(seen)
        app.logger.removeHandler(seen)
    assert statuses == [200, 404, 401]
    expected = [
        ["GET", "/", "401"],
        ["GET", "/livez", "200"],
        ["GET", "/nothing-here", "404"],
    ]
    assert request_lines() and all(line in expected for line in request_lines())
    # werkzeug writes its own line before it answers: none came through.
    assert [message for name, message in seen.lines if name == "werkzeug"] == []
    assert not [message for _, message in seen.lines if "secret.jwt.value" in message]


@pytest.mark.one_database
def test_app_log_is_redacted(app, caplog):
    caplog.set_level(logging.INFO)
    app.logger.info("client sent Authorization: Bearer %s", "secret.jwt.value")
    assert "secret.jwt.value" not in caplog.text
    assert "Bearer [redacted]" in caplog.text


@pytest.mark.parametrize(
    ("message", "written"),
    [
        ("GET /x\nFORGED line", "GET /x\\nFORGED line"),
        ("a\r\nb", "a\\r\\nb"),
        ("bell\x07 and escape\x1b[2J", "bell\\x07 and escape\\x1b[2J"),
        (
            "next line\x85 and separators \u2028\u2029",
            "next line\\x85 and separators \\u2028\\u2029",
        ),
        ("bidi \u202e reversed \u2066", "bidi \\u202e reversed \\u2066"),
        ("tab\tstays, ünïcödé stays", "tab\tstays, ünïcödé stays"),
    ],
)
@pytest.mark.one_database
def test_control_characters_are_escaped_in_every_record(app, caplog, message, written):
    with caplog.at_level(logging.INFO):
        app.logger.info("seen: %s", message)
    records = [r for r in caplog.records if "seen:" in r.getMessage()]
    assert [r.getMessage() for r in records] == [f"seen: {written}"]


@pytest.mark.one_database
def test_a_json_web_token_is_hidden_wherever_a_line_quotes_it(app, caplog):
    caplog.set_level(logging.INFO)
    token = make_token()
    app.logger.warning("refresh body was {'refresh_token': '%s'}", token)
    assert token not in caplog.text and token.split(".")[1] not in caplog.text
    assert "eyJ[redacted]" in caplog.text
