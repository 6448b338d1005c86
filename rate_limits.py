"""Limits on guessing passwords (Flask-Limiter): sign-ins per username and per
address, share-link and upload-request passwords per link and per address,
the address budget shared by all.

Every attempt that checks a password is counted when it starts, successful
ones too: Flask-Limiter's hit is one atomic step of its store (memory, or
Redis when RATELIMIT_STORAGE_URI names it), so a limit of N lets at most N
checks through however many arrive at once, on every worker and instance
sharing the store. A limit counted only once an attempt had failed was
checked at the start and counted at the end, and concurrent guesses all
passed the check in between. Ten a minute is plenty for a person; scripts
use API tokens. A request that checks no password (the sign-in page itself, a
link opened with its unlock cookie or a download's claim) is exempt: each
route says which of its requests check one.
"""

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Flask, current_app
from flask_limiter import Limiter, RouteLimit
from flask_limiter.util import get_remote_address

# Storage comes from RATELIMIT_STORAGE_URI (and RATELIMIT_KEY_PREFIX).
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)

P = ParamSpec("P")
R = TypeVar("R")

TOO_MANY_SIGN_INS = "Too many sign-in attempts; wait a minute and try again"
TOO_MANY_PASSWORDS = "Too many password attempts; wait a minute and try again"
TOO_MANY_CODES = (
    "Too many two-factor codes tried; wait a quarter of an hour and try again"
)


def _limit(
    setting: str,
    scope: str,
    exempt: Callable[[], bool],
    message: str,
    key: Callable[[], str] | None = None,
) -> RouteLimit:
    """A limit shared by every route that carries it: ``setting`` names its
    rate in the app's config, ``key`` what it counts per (the client's
    address unless given), ``exempt`` the requests it does not count."""
    return limiter.shared_limit(
        lambda: current_app.config[setting],
        scope=scope,
        key_func=key,
        exempt_when=exempt,
        error_message=message,
    )


def per_username(
    username_key: Callable[[], str], exempt: Callable[[], bool]
) -> RouteLimit:
    """Sign-in attempts per username (LOGIN_LIMIT_PER_USERNAME): a decorator.
    ``username_key`` names the username the attempt is for; ``exempt`` says
    when a request checks nobody's password."""
    return _limit(
        "LOGIN_LIMIT_PER_USERNAME",
        "login-username",
        exempt,
        TOO_MANY_SIGN_INS,
        username_key,
    )


def code_attempts(
    username_key: Callable[[], str], exempt: Callable[[], bool]
) -> RouteLimit:
    """Second-factor codes per account (TWO_FACTOR_LIMIT), on top of the
    sign-in limits: a decorator. Six digits are few to guess, so the window
    is long; ``exempt`` says when a request carries no code."""
    return _limit(
        "TWO_FACTOR_LIMIT", "two-factor", exempt, TOO_MANY_CODES, username_key
    )


def per_address(checks_no_password: Callable[[], bool]) -> RouteLimit:
    """Password attempts per client address, sign-ins and share links
    together (LOGIN_LIMIT_PER_ADDRESS): a decorator for a route whose requests
    ``checks_no_password`` tells apart."""
    return _limit(
        "LOGIN_LIMIT_PER_ADDRESS",
        "login-address",
        checks_no_password,
        TOO_MANY_PASSWORDS,
    )


def per_link(
    link_key: Callable[[], str], checks_no_password: Callable[[], bool]
) -> RouteLimit:
    """Password attempts per share link (SHARE_PASSWORD_LIMIT): a decorator."""
    return _limit(
        "SHARE_PASSWORD_LIMIT",
        "share-password",
        checks_no_password,
        TOO_MANY_PASSWORDS,
        link_key,
    )


def link_passwords(
    link_key: Callable[[], str], checks_no_password: Callable[[], bool]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Password attempts on a link, per link and per address together: a
    decorator (an upload request's routes)."""
    by_link = per_link(link_key, checks_no_password)
    by_address = per_address(checks_no_password)

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        return by_link(by_address(view))

    return decorate


def init_app(app: Flask) -> None:
    """Flask-Limiter on ``app``, as its documentation sets it up."""
    limiter.init_app(app)
