"""Keeping tokens where they belong: response headers, cross-site requests
refused, the session cookie's flags, and logs without secrets."""

import logging
import re

from flask import request
from flask.sessions import SecureCookieSessionInterface

from errors import ApiError

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


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request a page of this very site made, or that the
# user made by typing or following a bookmark.
OWN_SITE_FETCHES = frozenset({"same-origin", "none"})


def refuse_cross_site_requests():
    """Refuse a state-changing request a browser sent on behalf of another site.

    Browsers say where a request comes from: ``Sec-Fetch-Site`` (every current
    browser) or, failing that, ``Origin``. A form on evil.example that posts to
    ``/login`` would otherwise sign the victim's browser in to the attacker's
    account (login CSRF). Clients that are not browsers (curl, Postman,
    scripts) send neither header and are not affected.
    """
    if request.method in SAFE_METHODS:
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        allowed = fetch_site in OWN_SITE_FETCHES
    else:
        origin = request.headers.get("Origin")
        allowed = origin is None or origin == request.host_url.rstrip("/")
    if not allowed:
        raise ApiError(403, "Cross-site request refused")


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session (it carries flash messages), marked
    ``Secure`` whenever the request came over HTTPS, as well as when
    SESSION_COOKIE_SECURE says so."""

    def get_cookie_secure(self, app) -> bool:
        """Secure when configured, or when this request is HTTPS."""
        return super().get_cookie_secure(app) or request.is_secure


def init_app(app):
    """Register the headers, the cross-site check, the session cookie and the
    log filter."""
    app.session_interface = SessionInterface()
    app.before_request(refuse_cross_site_requests)
    app.after_request(add_security_headers)
    # The app's own log, and the development server's request log.
    for logger in (app.logger, logging.getLogger("werkzeug")):
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
