"""Identity: who may sign in and how. Passwords are checked by passwords.py,
sessions' tokens made by session_tokens.py, the steps after a right password
(a disabled account, the second factor) taken by sign_ins.py, and a page
session's URLs and cookies made by page_sessions.py. This module signs people
in (``/login``), keeps their session going (``/refresh``, and ``/renew`` for
pages) and signs them out (``/logout``), and holds the tutorial's
``check_for_token``: the decorator a view that needs an account's token
carries (caller.py says who is asking)."""

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as BaseResponse

import audit
import caller
import rate_limits
from errors import ApiError, no_content, wants_html
from models import User, db, retry_on_conflict
from page_sessions import (
    RENEWABLE,
    RENEWAL_GRACE_SECONDS,
    end_renewal_cookie,
    end_sign_in,
    next_after_sign_in,
    page_session,
    provider_agrees,
    provider_disagrees,
    safe_target,
    send_to_sign_in,
    set_renewal_cookie,
    signed_out,
    with_token,
)
from passwords import authenticate
from request_data import load_or_400, request_body
from schemas import logout_query_schema, token_pair_schema
from session_tokens import (
    ACCESS,
    BEARER_CHALLENGE,
    REFRESH,
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
from sign_ins import (
    how,
    page_second_factor,
    refuse_disabled,
    second_factor_or_401,
    sign_in_failed,
    sign_in_page,
    signed_in,
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
    return caller.account(scope, when_refused=send_to_sign_in)(view)


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
        next_page = next_after_sign_in(request.args.get("next"))
        return sign_in_page(next=next_page)
    attempt = caller.sign_in_attempt()
    user = authenticate(attempt.username, attempt.password)
    if user is None:
        sign_in_failed(attempt.typed, "wrong username or password")
        raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)
    refuse_disabled(user)
    second_factor_or_401(user, attempt.code)
    signed_in(user, how(user))
    return token_response(user)


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
        answer = page_second_factor(user, body, attempt)
        if answer is not None:
            return answer
        signed_in(user, how(user))
        return page_session(
            user, keep=bool(body.get("remember")), target=body.get("next")
        )
    if user is not None:
        second_factor_or_401(user, attempt.code)
        signed_in(user, how(user))
        return token_response(user)
    sign_in_failed(attempt.typed, "wrong username or password")
    if wants_html():
        page = sign_in_page(
            error="Wrong username or password",
            username=attempt.typed,
            next=next_after_sign_in(body.get("next")),
            remember=bool(body.get("remember")),
        )
        return page, 401
    raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)


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
        agrees = provider_agrees(claims)
        if agrees is not True:
            return provider_disagrees(agrees, target)
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


def _sign_out_expired(error: ApiError) -> BaseResponse | None:
    """Signing out from a page whose token has expired still signs out: the
    sign-in the token came from ends (its signature says it is ours), and the
    browser gives back its renewal cookie. Anything else is refused as usual."""
    if error.reason not in RENEWABLE or not wants_html():
        return send_to_sign_in(error)
    claims = caller.expired_session_claims()
    if claims is not None and not is_revoked("family:" + claims["fam"]):
        end_sign_in(claims["fam"])
        user = db.session.get(User, int(claims["sub"]))
        # Written once per sign-in, and only of the account's present tokens:
        # an old token posted again and again writes nothing more.
        if user is not None and claims.get("ver") == user.token_version:
            audit.record(
                "sign_out", audit.target_user(user), "from an expired page", user
            )
    return signed_out()


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
        return signed_out()
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
    if provider_agrees(claims) is not True:
        end_sign_in(str(claims.get("fam")))
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
