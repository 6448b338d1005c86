"""Pages that stay signed in: the browser's side of a session.

Signing in through the page also sets the renewal cookie: a refresh token of
the same sign-in, HttpOnly, SameSite=Lax and sent to the renewal route only.
A page opened with an expired ``?token=`` (or none) goes there and comes back
with a fresh one; the person never sees the sign-in page while the cookie is
good. API clients and the tutorial's ``?token=`` are as before.

This module makes the URLs and cookies of a page session, decides where a
refused browser goes, and keeps a page's ``?token=`` on its links
(``init_app``); authentication.py holds the views that use them."""

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask, current_app, flash, g, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

import caller
import oidc
from errors import ApiError, wants_html
from models import User, db, retry_on_conflict
from session_tokens import (
    ACCESS,
    REFRESH,
    RENEW_COOKIE,
    TOKEN_PROBLEMS,
    issue_token,
    revoke_family,
)

# Page renewals with the same cookie this close together are one person with
# several tabs, not a stolen copy (session_tokens.rotate).
RENEWAL_GRACE_SECONDS = 30

# Why a token may be renewed rather than the person sent to sign in.
RENEWABLE = frozenset({"expired", "missing"})

SUBMIT_AGAIN = "Your session had expired, so nothing was done. Please submit again."

# Where a browser goes when it names no page of its own: its files.
FRONT_PAGE = "/"

# A page that carries a sign-in ticket or a new secret is never kept.
NO_STORE = {"Cache-Control": "no-store"}


def safe_target(value: str | None) -> str:
    """Where to send a browser after a sign-in or a renewal: ``value`` when it
    is a path on this site (relative to the app's root), without any
    ``token=`` (a fresh one is added); else the front page."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return FRONT_PAGE
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or not value.isprintable():
        return FRONT_PAGE
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, item) for name, item in query if name != "token"]
    return urlunsplit(("", "", parts.path, urlencode(kept), ""))


def with_token(target: str, token: str | None) -> str:
    """The URL of ``target`` (a safe_target, which is relative to the app's
    root), with ``token`` first in its query string as the pages always write
    it."""
    path, _, query = target.partition("?")
    if token is not None:
        query = urlencode({"token": token}) + (f"&{query}" if query else "")
    return request.script_root + path + (f"?{query}" if query else "")


def this_page() -> str:
    """The page being asked for, as a safe_target (its token left out)."""
    return safe_target(caller.page_address())


def _cookie_secure() -> bool:
    """Lockbox's own cookies are Secure over HTTPS, or when configured so."""
    return bool(current_app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def set_private_cookie(
    response: BaseResponse,
    name: str,
    value: str,
    path: str,
    max_age: int | None = None,
    samesite: str = "Lax",
) -> None:
    """One of Lockbox's own cookies (a credential or a sealed secret): sent
    to ``path`` only, HttpOnly, Secure over HTTPS; a browser-session cookie
    unless ``max_age`` says otherwise."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        secure=_cookie_secure(),
        httponly=True,
        samesite=samesite,
    )


def end_private_cookie(
    response: BaseResponse, name: str, path: str, samesite: str = "Lax"
) -> None:
    """Take one of Lockbox's own cookies back from the browser."""
    response.delete_cookie(
        name, path=path, secure=_cookie_secure(), httponly=True, samesite=samesite
    )


def set_renewal_cookie(response: BaseResponse, refresh_token: str, keep: bool) -> None:
    """Give the browser a page session's refresh token: until the browser
    closes, or (``keep``) for the refresh token's life, which each renewal
    starts again."""
    lifetime = current_app.config["REFRESH_TTL_SECONDS"] if keep else None
    set_private_cookie(
        response, RENEW_COOKIE, refresh_token, url_for("auth.renew"), lifetime
    )


def end_renewal_cookie(response: BaseResponse) -> None:
    """Take the renewal cookie back from the browser."""
    end_private_cookie(response, RENEW_COOKIE, url_for("auth.renew"))


def _is_navigation() -> bool:
    """A page the person is going to (not a script's fetch): Fetch Metadata
    says so, or the browser is too old to send it."""
    return request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"


def send_to_sign_in(error: ApiError) -> BaseResponse | None:
    """A browser whose token was refused: a page it is going to renews its
    token (expired, or none came); a form it posted with an expired token
    does nothing and goes back to its page, which renews; anything else goes
    to the sign-in page, told why. API clients are answered as they are
    (None)."""
    if error.code != 401 or error.reason not in TOKEN_PROBLEMS or not wants_html():
        return None
    if error.reason in RENEWABLE and request.method == "GET" and _is_navigation():
        renewal = url_for("auth.renew", token=caller.page_token(), next=this_page())
        return redirect(renewal, 303)
    if error.reason in RENEWABLE and request.method == "POST":
        flash(SUBMIT_AGAIN, "error")
        return redirect(with_token(safe_target(request.args.get("back")), None), 303)
    told = TOKEN_PROBLEMS[error.reason][1]
    if told:
        flash(told, "error")
    target = this_page() if request.method == "GET" else None
    return redirect(url_for("auth.login", next=target), 303)


def page_token_for_templates() -> dict[str, Callable[[], str | None]]:
    """``page_token()`` for templates: whether the page was opened with a
    token (an error page then leads back to the files)."""
    return {"page_token": caller.page_token}


def keep_the_page_token(endpoint: str, values: dict[str, Any]) -> None:
    """Links and forms on a page carry the ``?token=`` the page was opened with,
    to every view that needs a token: the tutorial's browser flow, in one place
    instead of every ``url_for`` (which can still say ``token=None``)."""
    token = caller.page_token()
    if not token or "token" in values:
        return
    if caller.is_account_view(current_app.view_functions.get(endpoint)):
        # First in the query string, as the pages always wrote it.
        others = dict(values)
        values.clear()
        values.update(token=token, **others)
        rules = current_app.url_map.iter_rules(endpoint)
        if not any("GET" in (r.methods or ()) for r in rules):
            # A form's target: where to come back to if the token has
            # expired by the time it is sent (send_to_sign_in).
            page = this_page()
            if page != FRONT_PAGE:
                values.setdefault("back", page)


def next_after_sign_in(value: object) -> str | None:
    """Where the sign-in page sends the person once signed in: the ``next``
    it was opened with or posted (``value``), when it is a path on this site."""
    if not isinstance(value, str) or not value:
        return None
    return safe_target(value)


def page_session(
    user: User,
    keep: bool,
    target: object,
    sso: bool = False,
    first: Callable[[str], str] | None = None,
) -> BaseResponse:
    """A browser signed in: on to where it was going (``target``, a path on
    this site) with an access token in the URL, and the renewal cookie of
    the same sign-in; ``sso``: the sign-in was made through the identity
    provider. ``first``, when given, makes a page to show first from the
    address it links on to, instead of the redirect."""
    family = uuid.uuid4().hex
    place = safe_target(target if isinstance(target, str) else None)
    address = with_token(place, issue_token(user, ACCESS, family))
    if first is None:
        response = redirect(address, 303)
    else:
        response = current_app.make_response(first(address))
        response.headers["Cache-Control"] = "no-store"
    refresh_token = issue_token(user, REFRESH, family, keep=keep, sso=sso)
    set_renewal_cookie(response, refresh_token, keep)
    return response


def provider_agrees(claims: dict) -> bool | None:
    """Whether the sign-in behind refresh token ``claims`` may go on, as far
    as the identity provider is concerned: True for a password sign-in, or
    one the provider vouched for less than OIDC_RECHECK_SECONDS ago (else it
    is asked now, oidc.recheck); False when it refuses; None when the
    browser must go through it again. A 503 when it can't be reached: the
    session waits for it rather than go on unchecked."""
    subject = str(claims.get("sub", ""))
    if claims.get("sso") is not True or not subject.isdigit() or len(subject) > 10:
        return True
    user = db.session.get(User, int(subject))
    if user is None:
        return True
    try:
        return oidc.still_vouches(user)
    except oidc.ProviderDown:
        raise ApiError(503, oidc.DOWN_MESSAGE) from None


def end_sign_in(family: str) -> None:
    """Revoke a whole sign-in (committed)."""

    @retry_on_conflict
    def end() -> None:
        revoke_family(family)

    end()


def provider_disagrees(agrees: bool | None, target: str) -> BaseResponse:
    """A page session the identity provider no longer vouches for: the
    browser goes through the provider again (None), or (False) to the
    sign-in page, told why; the sign-in and its cookie end."""
    claims = g.caller.record.cookie
    end_sign_in(claims["fam"])
    if agrees is None:
        response = redirect(url_for("sso.start", next=target), 303)
    else:
        flash("Your identity provider no longer lets you sign in here.", "error")
        response = redirect(url_for("auth.login", next=target), 303)
    end_renewal_cookie(response)
    return response


def signed_out() -> BaseResponse:
    """A browser, signed out: to the sign-in page, its renewal cookie ended."""
    flash("You are signed out", "success")
    response = redirect(url_for("auth.login"), 303)
    end_renewal_cookie(response)
    return response


def init_app(app: Flask) -> None:
    """Give every page ``page_token()`` and keep its token on its links."""
    app.context_processor(page_token_for_templates)
    app.url_defaults(keep_the_page_token)
