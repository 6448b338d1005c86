"""Response headers that keep tokens and pages where they belong."""

from flask import request

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
    """Register the headers and the session cookie's settings."""
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.after_request(add_security_headers)
