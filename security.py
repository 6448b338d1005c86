"""Keeping tokens where they belong: response headers, and logs without secrets."""

import logging
import re

from flask import request

# `token=<anything up to & or whitespace>` in a URL, and the credentials of an
# Authorization header, wherever they appear in a log line.
TOKEN_IN_URL = re.compile(r"((?:^|[?&\s])(?:refresh_)?token=)[^&\s\"']+")
AUTHORIZATION = re.compile(r"((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with token values and Authorization credentials replaced."""
    return AUTHORIZATION.sub(r"\1" + REDACTED, TOKEN_IN_URL.sub(r"\1" + REDACTED, text))


class RedactingFilter(logging.Filter):
    """A logging filter that takes tokens out of every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets redacted; never drop it."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# Pages load only their own stylesheet and script: no inline code, no frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def add_security_headers(response):
    """Headers for every response, and more for pages and for URLs with a token."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
    # A token must never travel on to another site in a Referer header.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if "token" in request.args:
        # A URL with a token in it must not be kept by the browser or a proxy.
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app):
    """Register the headers, the session cookie's settings and the log filter."""
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.after_request(add_security_headers)
    # The app's own log, and the development server's request log.
    for logger in (app.logger, logging.getLogger("werkzeug")):
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
