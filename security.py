"""Browser-facing protections: response headers (CSP, no-store for token URLs,
Referrer-Policy), cross-site requests refused, and the session cookie's flags."""

import functools
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, request
from flask.sessions import (
    SecureCookieSession,
    SecureCookieSessionInterface,
    SessionMixin,
)

from caller import token_in_url
from errors import ApiError

# Pages load only their own stylesheet and script: no inline code, no frames.
# form-action comes last: single sign-on adds the provider's origin to it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@functools.cache
def _policy_for(issuer: str | None) -> str:
    """The pages' policy with ``issuer``'s origin among the form targets."""
    if not issuer:
        return CONTENT_SECURITY_POLICY
    parts = urlsplit(issuer)
    return f"{CONTENT_SECURITY_POLICY} {parts.scheme}://{parts.netloc}"


def content_security_policy() -> str:
    """The pages' policy. With single sign-on, its forms (sign in with the
    provider, link the account) may also lead to the identity provider's
    origin: browsers hold a form's redirects to form-action too."""
    return _policy_for(current_app.config.get("OIDC_ISSUER"))


def add_security_headers(response: Response) -> Response:
    """Headers for every response, and more for pages and for URLs with a token."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if (response.content_type or "").startswith("text/html"):
        headers.setdefault("Content-Security-Policy", content_security_policy())
        headers.setdefault("X-Frame-Options", "DENY")
    # A token must never travel on to another site in a Referer header.
    headers.setdefault("Referrer-Policy", "no-referrer")
    if token_in_url():
        # A URL with a token in it must not be kept by the browser or a proxy.
        headers["Cache-Control"] = "no-store"
    return response


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request a page of this very site made, or that the
# user made by typing or following a bookmark.
OWN_SITE_FETCHES = frozenset({"same-origin", "none"})


def refuse_cross_site_requests() -> None:
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

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure when configured, or when this request is HTTPS."""
        return super().get_cookie_secure(app) or request.is_secure

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """An empty session at once for a request without the session cookie,
        as every API client's is: Flask would first build the cookie's signer,
        with nothing to verify."""
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(
        self, app: Flask, session: SessionMixin, response: Response
    ) -> None:
        """Nothing at all for a session nobody looked at and that stays empty:
        Flask would first work out every flag of a cookie it then does not set."""
        if session or session.modified or session.accessed:
            super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    """Register the headers, the cross-site check and the session cookie."""
    app.session_interface = SessionInterface()
    app.before_request(refuse_cross_site_requests)
    app.after_request(add_security_headers)
