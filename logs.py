"""Logging: one line per request with its id, text or JSON, no secrets, and
no line anybody but the app wrote.

This module owns every log the app and its servers write: the format (text,
or JSON with ``LOG_FORMAT=json``), the request id on every record, the one
line each request gets once its answer has been sent (gunicorn's own access
log is off, see gunicorn.conf.py, and the development server's request lines
are dropped), the redaction of tokens and credentials, and the escaping of
control characters (a path or a name with a line break in it stays on its
line), applied to the app's logger, the development server's and gunicorn's
alike.
"""

import logging
import random
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from flask import Flask, Response, current_app, g, has_request_context, request
from gunicorn.glogging import Logger as GunicornBaseLogger
from pythonjsonlogger.json import JsonFormatter

# What any request may carry: `token=` or `refresh_token=` (anything up to &
# or whitespace) in a URL, and the credentials of an Authorization header.
# Each kind of credential adds the patterns of its own (redact_secret): a
# share link's or an upload's key in a path, an API token anywhere.
TOKEN_IN_URL = re.compile(r"((?:^|[?&\s])(?:refresh_)?token=)[^&\s\"']+")
AUTHORIZATION = re.compile(r"((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
REDACTED = "[redacted]"
# A request id a client or proxy may send: short, and safe to echo and log.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
# The development server's request line (werkzeug.serving), which the app's
# own line replaces.
WERKZEUG_REQUEST_LINE = '"%s" %s %s'
# Where the observers of answered requests are kept, in app.extensions.
OBSERVERS = "lockbox.answered"


# Each pattern's first group is kept, the rest replaced.
SECRETS: list[re.Pattern] = [TOKEN_IN_URL, AUTHORIZATION]


def _any_of(secrets: list[re.Pattern]) -> re.Pattern:
    """One pattern that finds any of ``secrets``: one scan clears the usual
    line, which holds none."""
    return re.compile(
        "|".join(
            f"(?i:{secret.pattern})" if secret.flags & re.IGNORECASE else secret.pattern
            for secret in secrets
        )
    )


ANY_SECRET = _any_of(SECRETS)


def redact_secret(pattern: re.Pattern) -> None:
    """Keep what ``pattern`` matches out of every log line from now on (its
    first group stays, the rest becomes [redacted]). Each credential module
    registers its own when it is imported; this module imports none."""
    global ANY_SECRET
    if pattern not in SECRETS:
        SECRETS.append(pattern)
        ANY_SECRET = _any_of(SECRETS)


# Characters that would start a line of someone else's making in the log, or
# change what a terminal shows: C0 and C1 controls (but the tab), DEL, the
# Unicode line and paragraph separators, and the bidirectional overrides.
CONTROL = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match) -> str:
    """One control character as Python writes it in a string: \\n, \\x1b, \\u2028."""
    character = match.group()
    if character in NAMED_ESCAPES:
        return NAMED_ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with its control characters escaped: a value that came from a
    request (a path, a name, a header) stays on its log line."""
    if CONTROL.search(text) is None:
        return text
    return CONTROL.sub(_escape, text)


def redact(text: str) -> str:
    """``text`` with token values, credentials and every registered secret
    (upload keys, share links, API tokens) replaced."""
    if ANY_SECRET.search(text) is None:
        return text
    for secret in SECRETS:
        text = secret.sub(r"\1" + REDACTED, text)
    return text


class RequestLine(logging.LogRecord):
    """The record of a request's line, already redacted."""

    def __init__(
        self, name: str, level: int, pathname: str, lineno: int, msg: str
    ) -> None:
        super().__init__(name, level, pathname, lineno, msg, None, None)


class RedactingFilter(logging.Filter):
    """A logging filter that takes tokens out of every record it passes, and
    escapes its control characters."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets redacted and control
        characters escaped; never drop it."""
        if isinstance(record, RequestLine):
            return True  # redacted and escaped as it was made
        message = record.getMessage()
        cleaned = printable(redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``record.request_id`` unless the record brought one; never drop it."""
        if not hasattr(record, "request_id"):
            in_request = has_request_context()
            record.request_id = g.get("request_id", "-") if in_request else "-"
        return True


class DropRequestLines(logging.Filter):
    """Drops the development server's request lines: the app logs its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for werkzeug's per-request record, True for anything else."""
        return not str(record.msg).rstrip().endswith(WERKZEUG_REQUEST_LINE)


def _start_request() -> None:
    """Take the client's X-Request-ID when it is sane, or make one."""
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    if REQUEST_ID_RE.fullmatch(incoming):
        g.request_id = incoming
    else:
        # An id to find a request's lines by, not a secret: Python's generator
        # (re-seeded in every forked worker) instead of uuid4, whose read of
        # the kernel's random source gives up the GIL to threads that then
        # keep it (docs/benchmarks.md).
        g.request_id = f"{random.getrandbits(128):032x}"
    g.request_started = time.perf_counter()


class Answered(NamedTuple):
    """A request whose answer has been sent: what the per-request line tells,
    for the other observers of requests (metrics.py)."""

    route: str | None  # the matched rule, e.g. /files/<int:file_id>; None if none
    method: str
    status: int
    seconds: float  # from the request's start to its answer's last byte


def after_each_answer(app: Flask, observer: Callable[[Answered], None]) -> None:
    """Call ``observer`` with each request's :class:`Answered`, right after its
    line is logged: one closure per request serves them all."""
    app.extensions.setdefault(OBSERVERS, []).append(observer)


def _finish_request(response: Response) -> Response:
    """Echo the request id; log the request's one line once the answer is sent.

    Written when the server closes the response, so that a streamed download's
    line tells how long the whole transfer took. The path goes without its
    query string, which may hold a token.
    """
    request_id = g.get("request_id", "-")
    response.headers["X-Request-ID"] = request_id
    started = g.get("request_started") or time.perf_counter()
    rule = request.url_rule
    route = None if rule is None else rule.rule
    method, path, address = request.method, request.path, request.remote_addr
    status, length = response.status_code, response.content_length
    # current_app is a LocalProxy; Flask types it as the app it stands for.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    logger, observers = app.logger, app.extensions.get(OBSERVERS, ())

    def answered() -> None:
        seconds = time.perf_counter() - started
        if logger.isEnabledFor(logging.INFO):
            size = "-" if length is None else length
            line = f"{method} {path} {status} {seconds * 1000:.1f}ms {size}B {address}"
            # Made and handed to the handlers directly: logger.info would first
            # walk the stack for the caller's file and line, which this line
            # never shows (docs/benchmarks.md).
            record = RequestLine(
                logger.name, logging.INFO, __file__, 0, printable(redact(line))
            )
            record.request_id = request_id
            logger.handle(record)
        if observers:
            summary = Answered(route, method, status, seconds)
            for observer in observers:
                observer(summary)

    response.call_on_close(answered)
    return response


def _handler(log_format: str) -> logging.Handler:
    """A stderr handler in the chosen format, with request ids and redaction."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(JSON_FIELDS))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    return handler


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger (``logger_class`` in gunicorn.conf.py): its error log
    (worker starts and stops, invalid requests) redacted like everything else.
    Its access log stays off: each request's line is the app's."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's handlers, with every error-log record redacted."""
        super().setup(cfg)
        self.error_log.addFilter(RedactingFilter())

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta
    ) -> dict[str, Any]:
        """The access log's fields redacted, should someone turn it on."""
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: printable(redact(value)) if isinstance(value, str) else value
            for name, value in atoms.items()
        }


def init_app(app: Flask) -> None:
    """One handler on the app's logger, request ids, and the per-request line."""
    app.logger.handlers = [_handler(app.config.get("LOG_FORMAT", "text"))]
    app.logger.setLevel(logging.DEBUG if app.debug else logging.INFO)
    # Records also reach pytest's capture and any root handler an operator adds.
    app.logger.propagate = True
    werkzeug = logging.getLogger("werkzeug")
    # Request lines are dropped before anything else looks at them: the
    # redaction rewrites a record whose text it changes (escaping the colours
    # werkzeug gives a 404), and the line would no longer be recognised.
    for log_filter in (DropRequestLines, RedactingFilter):
        if not any(isinstance(f, log_filter) for f in werkzeug.filters):
            werkzeug.addFilter(log_filter())
    app.before_request(_start_request)
    app.after_request(_finish_request)
