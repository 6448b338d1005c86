"""Identity: who may sign in and how. Passwords are checked by passwords.py
and sessions' tokens made by session_tokens.py; this module signs people in
(``/login``), keeps their session going (``/refresh``) and signs them out
(``/logout``), and holds the tutorial's ``check_for_token``: the decorator a
view that needs an account's token carries (caller.py says who is asking)."""

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import update
from werkzeug.wrappers import Response as BaseResponse

import audit
import caller
import oidc
import rate_limits
import two_factor
from errors import ApiError, no_content, wants_html
from models import User, change_account, db, retry_on_conflict, utcnow
from passwords import authenticate
from request_data import load_or_400, request_body
from schemas import logout_query_schema, token_pair_schema
from session_tokens import (
    ACCESS,
    BEARER_CHALLENGE,
    REFRESH,
    RENEW_COOKIE,
    TOKEN_PROBLEMS,
    invalid_token,
    is_revoked,
    issue_token,
    prune_revoked,
    retire_token,
    revoke_all_tokens,
    revoke_family,
    rotate,
)

bp = Blueprint("auth", __name__)

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Login required"'}


def _login_username() -> str:
    """The sign-in limit's key: the canonical username the attempt is for."""
    return "username:" + (caller.sign_in_attempt().username or "")


def _no_real_username() -> bool:
    """A request whose name no account can have (or with none) is exempt from
    the per-username limit: it checks nobody's password, and must never lock
    out a real user. The per-address limit still counts it."""
    return (
        not caller.checks_a_sign_in_password()
        or caller.sign_in_attempt().username is None
    )


# Shared by GET and POST /login: guessing one way counts against the other.
limit_per_username = rate_limits.per_username(_login_username, _no_real_username)
limit_per_address = rate_limits.per_address(
    lambda: not caller.checks_a_sign_in_password()
)
# Second-factor codes, per account: only requests that carry one count.
limit_codes = rate_limits.code_attempts(
    _login_username,
    lambda: (
        caller.sign_in_attempt().code is None
        or caller.sign_in_attempt().username is None
    ),
)


# --- pages that stay signed in ---------------------------------------------
#
# Signing in through the page also sets the renewal cookie: a refresh token
# of the same sign-in, HttpOnly, SameSite=Lax and sent to the renewal route
# only. A page opened with an expired ``?token=`` (or none) goes there and
# comes back with a fresh one; the person never sees the sign-in page while
# the cookie is good. API clients and the tutorial's ``?token=`` are as before.

# Page renewals with the same cookie this close together are one person with
# several tabs, not a stolen copy (session_tokens.rotate).
RENEWAL_GRACE_SECONDS = 30
# Why a token may be renewed rather than the person sent to sign in.
RENEWABLE = frozenset({"expired", "missing"})
SUBMIT_AGAIN = "Your session had expired, so nothing was done. Please submit again."
# Where a browser goes when it names no page of its own: its files.
FRONT_PAGE = "/"


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


def _send_to_sign_in(error: ApiError) -> BaseResponse | None:
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


def check_for_token(
    view: Callable[..., Any] | None = None,
    *,
    scope: str | tuple[str, ...] | None = None,
) -> Callable[..., Any]:
    """Let the view run only for a valid token; its user is ``g.user``, the
    caller ``g.caller`` (caller.py).

    ``@check_for_token`` alone takes a signed-in session's token (a JSON Web
    Token) and nothing else; ``@check_for_token(scope="files:read")`` also takes
    a personal access token that has the scope, and
    ``scope=("files:read", "shares:write")`` one that has every scope named. A
    personal access token without them gets a 403 naming the first one it
    lacks, before the view looks anything up.

    API clients get the 401 JSON error. A browser going to a page with an
    expired token, or none, is sent to renew it (the renewal cookie) and comes
    back; else to the sign-in page, told why.
    """
    if view is None:
        return functools.partial(check_for_token, scope=scope)
    return caller.account(scope, when_refused=_send_to_sign_in)(view)


@bp.app_context_processor
def page_token_for_templates() -> dict[str, Callable[[], str | None]]:
    """``page_token()`` for templates: whether the page was opened with a
    token (an error page then leads back to the files)."""
    return {"page_token": caller.page_token}


@bp.app_url_defaults
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
            # expired by the time it is sent (_send_to_sign_in).
            page = this_page()
            if page != FRONT_PAGE:
                values.setdefault("back", page)


def token_response(
    user: User,
    family: str | None = None,
    refresh_id: str | None = None,
    sso: bool = False,
) -> Response:
    """The JSON answer to a sign-in or a refresh: an access and a refresh
    token (whose id is ``refresh_id`` when given: a rotated token's
    successor; ``sso``: of a sign-in made through the identity provider,
    which its refreshes keep checking back with)."""
    family = family or uuid.uuid4().hex
    refresh_token = issue_token(user, REFRESH, family, jti=refresh_id, sso=sso)
    response = jsonify(
        token_pair_schema.dump(
            {
                "token": issue_token(user, ACCESS, family),
                "token_type": "Bearer",
                "expires_in": current_app.config["TOKEN_TTL_SECONDS"],
                "refresh_token": refresh_token,
                "refresh_expires_in": current_app.config["REFRESH_TTL_SECONDS"],
            }
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/login")
@limit_per_username
@limit_per_address
@limit_codes
@caller.password
def login() -> ResponseReturnValue:
    """Exchange HTTP Basic credentials for tokens; browsers get the sign-in page.
    ---
    get:
      security:
      - basic: []
      parameters: [TwoFactorCode]
      responses:
        200:
          description: Access and refresh tokens (or, for a browser, the page)
          content:
            application/json:
              schema: TokenPairSchema
            text/html: {}
        401: BadCredentials
    """
    if not caller.checks_a_sign_in_password() and wants_html():
        told = TOKEN_PROBLEMS["expired"][1]
        if request.args.get("expired") and told:
            flash(told, "error")
        next_page = _next_after_sign_in(request.args.get("next"))
        return _sign_in_page(next=next_page)
    attempt = caller.sign_in_attempt()
    user = authenticate(attempt.username, attempt.password)
    if user is None:
        sign_in_failed(attempt.typed, "wrong username or password")
        raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)
    refuse_disabled(user)
    _second_factor_or_401(user, attempt.code)
    signed_in(user, _how(user))
    return token_response(user)


DISABLED = "This account is disabled — ask your administrator"


def refuse_disabled(user: User) -> None:
    """Refuse to sign in an account an administrator disabled (403), with a
    row in the audit log; its password or provider was right."""
    if user.disabled_at is not None:
        sign_in_failed(user.username, "account disabled")
        raise ApiError(403, DISABLED)


def sign_in_failed(username: str | None, why: str) -> None:
    """Write down a refused sign-in: the name typed (never the password), why."""
    audit.record("sign_in.failed", f"username {username or ''}", why)


def signed_in(user: User, how: str) -> None:
    """Write down a sign-in: the account's last sign-in time (for the admin
    area) and the audit log's row."""
    db.session.execute(
        update(User).where(User.id == user.id).values(last_sign_in_at=utcnow())
    )
    db.session.commit()
    audit.record("sign_in", audit.target_user(user), how, actor=user)


def _how(user: User) -> str:
    """How a password sign-in was made, for the audit log."""
    return "password and second factor" if two_factor.is_on(user) else "password"


# A page that carries a sign-in ticket or a new secret is never kept.
NO_STORE = {"Cache-Control": "no-store"}
# An API client signing in to an account with two factors is told so, as
# GitHub's API did with X-GitHub-OTP.
OTP_CHALLENGE = {"X-Lockbox-OTP": "required; app"}
CODE_NEEDED = (
    "This account has two-factor sign-in: send the code from the "
    "authenticator app (or a recovery code) in the X-Lockbox-OTP header"
)
WRONG_CODE = "Wrong or already used two-factor code"
SET_UP_FIRST = (
    "This account must set up two-factor sign-in first: sign in once on the "
    "sign-in page to set it up"
)


def _second_factor_or_401(user: User, code: str | None) -> None:
    """Let an API client's sign-in through only with its second factor: a
    401 saying what is missing, else the code used up (committed)."""
    if two_factor.required_of(user):
        raise ApiError(401, SET_UP_FIRST, OTP_CHALLENGE, reason="two_factor")
    if not two_factor.is_on(user):
        return
    if code is None:
        raise ApiError(401, CODE_NEEDED, OTP_CHALLENGE, reason="two_factor")
    if not _code_accepted(user, code):
        sign_in_failed(user.username, "wrong second factor code")
        raise ApiError(401, WRONG_CODE, OTP_CHALLENGE, reason="two_factor")


def _code_accepted(user: User, code: str) -> bool:
    """Whether ``code`` lets ``user`` in, used up if so (committed)."""
    return change_account(user, lambda fresh: two_factor.check(fresh, code))


@bp.post("/login")
@limit_per_username
@limit_per_address
@limit_codes
@caller.password
def login_form() -> ResponseReturnValue:
    """Sign in with a username and password, as a form or a JSON body.

    A browser is sent on where it was going (``next``, a path on this site;
    else its files) with the token in the URL, and given the renewal cookie:
    for this browser session, or with ``remember`` ("keep me signed in") for
    REFRESH_TTL_SECONDS from its last use. An API client gets the same JSON
    as ``GET /login``.
    ---
    post:
      security: []
      parameters: [TwoFactorCode]
      requestBody:
        required: true
        content:
          application/json:
            schema: CredentialsSchema
          application/x-www-form-urlencoded:
            schema: CredentialsSchema
      responses:
        200:
          description: Access and refresh tokens
          content:
            application/json:
              schema: TokenPairSchema
        303:
          description: A browser, sent on to its files
        401: BadCredentials
    """
    body = request_body()  # a body that is not an object is a 400
    attempt = caller.sign_in_attempt()
    if attempt.ticket is not None:
        user = attempt.ticket_user
        if user is None and wants_html():
            flash("That took too long, so nothing was done: sign in again.", "error")
            return redirect(url_for("auth.login", next=body.get("next")), 303)
        if user is None:
            raise ApiError(401, "The sign-in ticket has expired: sign in again")
    else:
        user = authenticate(attempt.username, attempt.password)
    if user is not None:
        refuse_disabled(user)
    if user is not None and wants_html():
        answer = _page_second_factor(user, body, attempt)
        if answer is not None:
            return answer
        signed_in(user, _how(user))
        return page_session(
            user, keep=bool(body.get("remember")), target=body.get("next")
        )
    if user is not None:
        _second_factor_or_401(user, attempt.code)
        signed_in(user, _how(user))
        return token_response(user)
    sign_in_failed(attempt.typed, "wrong username or password")
    if wants_html():
        page = _sign_in_page(
            error="Wrong username or password",
            username=attempt.typed,
            next=_next_after_sign_in(body.get("next")),
            remember=bool(body.get("remember")),
        )
        return page, 401
    raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)


def _sign_in_page(**values: object) -> str:
    """The sign-in page: the password form, and the identity provider's
    button when single sign-on is set up."""
    name = current_app.config["OIDC_PROVIDER_NAME"] if oidc.configured() else None
    return render_template("login.html", sso_name=name, **values)


def _next_after_sign_in(value: object) -> str | None:
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


def _page_second_factor(
    user: User, body: dict, attempt: caller.SignInAttempt
) -> ResponseReturnValue | None:
    """The page's second step after a right password: None when the sign-in
    may go on (no second factor, or its code is right); else the page that
    asks for the code, or (REQUIRE_TWO_FACTOR) sets the second factor up."""
    fields = {
        # The ticket keeps the time of the password it stands for.
        "ticket": attempt.ticket or two_factor.ticket_for(user),
        "next": _next_after_sign_in(body.get("next")),
        "remember": bool(body.get("remember")),
    }
    if two_factor.required_of(user):
        return _set_up_while_signing_in(user, body, attempt, fields)
    if not two_factor.is_on(user):
        return None
    if attempt.code is None or attempt.ticket is None:
        return render_template("login_code.html", **fields), 200, NO_STORE
    if _code_accepted(user, attempt.code):
        return None
    sign_in_failed(user.username, "wrong second factor code")
    page = render_template("login_code.html", error=WRONG_CODE, **fields)
    return page, 401, NO_STORE


def _set_up_while_signing_in(
    user: User, body: dict, attempt: caller.SignInAttempt, fields: dict
) -> ResponseReturnValue:
    """REQUIRE_TWO_FACTOR, for an account without a second factor: the page
    sets it up (a new secret; then the first code turns it on and shows the
    recovery codes, which lead on to the files)."""
    code = attempt.code
    if attempt.ticket is not None and code is not None:
        codes = change_account(user, lambda fresh: two_factor.confirm(fresh, code))
        if codes is not None:
            audit.record("two_factor.enabled", audit.target_user(user), actor=user)
            signed_in(user, "password, setting up a second factor")
            return page_session(
                user,
                bool(body.get("remember")),
                body.get("next"),
                first=lambda address: render_template(
                    "recovery_codes.html", codes=codes, next_address=address
                ),
            )
        sign_in_failed(user.username, "wrong second factor code, setting it up")
    secret = two_factor.secret_of(user)
    if secret is None or attempt.ticket is None:
        secret = change_account(user, two_factor.begin)
    uri = two_factor.setup_uri(user, secret)
    page = render_template(
        "two_factor_setup.html",
        secret=secret,
        qr_code=two_factor.qr_code_svg(uri),
        uri=uri,
        error=WRONG_CODE if attempt.code is not None else None,
        signing_in=True,
        **fields,
    )
    return page, 401 if attempt.code is not None else 200, NO_STORE


@bp.get("/renew")
@caller.renewal
def renew() -> ResponseReturnValue:
    """Renew a page's session with the renewal cookie, and go back to the page.

    A browser comes here when a page it opens has an expired token or none;
    it goes back (303) to ``next`` with a fresh token, the cookie rotated.
    Without a good cookie, or with the cookie of another account than the
    page's token, it goes to the sign-in page, which then sends it on to
    ``next``.
    ---
    get:
      security: []
      parameters:
      - in: query
        schema: RenewQuerySchema
      responses:
        303:
          description: Back to the page with a fresh token, or to sign in
    """
    target = safe_target(request.args.get("next"))
    attempt = g.caller.record
    claims = attempt.cookie
    same_person = attempt.page_user is None or (
        claims is not None and attempt.page_user == claims["sub"]
    )
    rotated = None
    if claims is not None and same_person:
        agrees = _provider_agrees(claims)
        if agrees is not True:
            return _provider_disagrees(agrees, target)
        try:
            rotated = rotate(claims, RENEWAL_GRACE_SECONDS)
        except ApiError:
            rotated = None  # signed out, or every token of the account ended
        if rotated is None:
            current_app.logger.info("Renewal cookie refused")
    if rotated is None:
        if attempt.page_user is not None:
            told = TOKEN_PROBLEMS["expired"][1]
            if told:
                flash(told, "error")
        response = redirect(url_for("auth.login", next=target), 303)
        if claims is not None and same_person:
            end_renewal_cookie(response)
        return response
    user, successor = rotated
    keep = claims.get("keep") is True
    family = claims["fam"]
    response = redirect(with_token(target, issue_token(user, ACCESS, family)), 303)
    refresh_token = issue_token(
        user, REFRESH, family, jti=successor, keep=keep, sso=claims.get("sso") is True
    )
    set_renewal_cookie(response, refresh_token, keep)
    return response


def _provider_agrees(claims: dict) -> bool | None:
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


def _end_sign_in(family: str) -> None:
    """Revoke a whole sign-in (committed)."""

    @retry_on_conflict
    def end() -> None:
        revoke_family(family)

    end()


def _provider_disagrees(agrees: bool | None, target: str) -> BaseResponse:
    """A page session the identity provider no longer vouches for: the
    browser goes through the provider again (None), or (False) to the
    sign-in page, told why; the sign-in and its cookie end."""
    claims = g.caller.record.cookie
    _end_sign_in(claims["fam"])
    if agrees is None:
        response = redirect(url_for("sso.start", next=target), 303)
    else:
        flash("Your identity provider no longer lets you sign in here.", "error")
        response = redirect(url_for("auth.login", next=target), 303)
    end_renewal_cookie(response)
    return response


def _sign_out_expired(error: ApiError) -> BaseResponse | None:
    """Signing out from a page whose token has expired still signs out: the
    sign-in the token came from ends (its signature says it is ours), and the
    browser gives back its renewal cookie. Anything else is refused as usual."""
    if error.reason not in RENEWABLE or not wants_html():
        return _send_to_sign_in(error)
    claims = caller.expired_session_claims()
    if claims is not None and not is_revoked("family:" + claims["fam"]):
        _end_sign_in(claims["fam"])
        user = db.session.get(User, int(claims["sub"]))
        # Written once per sign-in, and only of the account's present tokens:
        # an old token posted again and again writes nothing more.
        if user is not None and claims.get("ver") == user.token_version:
            audit.record(
                "sign_out", audit.target_user(user), "from an expired page", user
            )
    return _signed_out()


def _signed_out() -> BaseResponse:
    """A browser, signed out: to the sign-in page, its renewal cookie ended."""
    flash("You are signed out", "success")
    response = redirect(url_for("auth.login"), 303)
    end_renewal_cookie(response)
    return response


@bp.post("/logout")
@caller.account(when_refused=_sign_out_expired)
def logout() -> ResponseReturnValue:
    """Revoke the token and its sign-in's refresh tokens (everywhere=1: all).

    With ``?everywhere=1``, every token the user holds, on every device.
    ---
    post:
      parameters:
      - in: query
        schema: LogoutQuerySchema
      responses:
        204:
          description: Signed out
        303:
          description: A browser, sent to the sign-in page
    """
    everywhere = load_or_400(logout_query_schema, request.args.to_dict())["everywhere"]

    @retry_on_conflict
    def sign_out() -> None:
        if everywhere:
            revoke_all_tokens(g.user)
        else:
            # This token, and the refresh tokens of the same sign-in with it.
            claims = g.caller.record
            retire_token(str(claims["jti"]), datetime.fromtimestamp(claims["exp"], UTC))
            revoke_family(claims["fam"])
        prune_revoked()

    sign_out()
    audit.record(
        "sign_out.everywhere" if everywhere else "sign_out", audit.target_user(g.user)
    )
    if wants_html():
        return _signed_out()
    return no_content()


@bp.post("/refresh")
@caller.refresh_token_holder
def refresh() -> Response:
    """Trade a refresh token for a new pair; the old one is retired.

    Presenting a retired one again means it was copied: the whole family
    (every token descended from the same sign-in) is revoked.
    ---
    post:
      security:
      - bearer: []
      requestBody:
        required: false
        content:
          application/json:
            schema: RefreshBodySchema
          application/x-www-form-urlencoded:
            schema: RefreshBodySchema
      responses:
        200:
          description: A new access and refresh token
          content:
            application/json:
              schema: TokenPairSchema
        401: TokenError
    """
    claims = g.caller.record  # signature and claims checked (caller.py)
    if _provider_agrees(claims) is not True:
        _end_sign_in(str(claims.get("fam")))
        raise ApiError(
            401,
            "Your identity provider no longer vouches for this sign-in: sign in again",
            BEARER_CHALLENGE,
            reason="revoked",
        )
    ended_before = is_revoked("family:" + str(claims["fam"]))
    rotated = rotate(claims)
    if rotated is None and ended_before:
        raise invalid_token("revoked")
    if rotated is None:
        current_app.logger.warning("Refresh token reused; family revoked")
        audit.record(
            "sign_out",
            f"user {claims['sub']}",
            "a refresh token was used twice: its sign-in ended everywhere",
        )
        raise invalid_token("revoked")
    user, successor = rotated
    return token_response(user, claims["fam"], successor, claims.get("sso") is True)
