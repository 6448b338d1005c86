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
from werkzeug.wrappers import Response as BaseResponse

import caller
import rate_limits
from errors import ApiError, no_content, wants_html
from models import User, retry_on_conflict
from passwords import authenticate
from request_data import load_or_400, request_body
from schemas import logout_query_schema, token_pair_schema
from session_tokens import (
    ACCESS,
    REFRESH,
    TOKEN_PROBLEMS,
    invalid_token,
    is_revoked,
    issue_token,
    prune_revoked,
    retire_token,
    revoke_all_tokens,
    revoke_family,
    user_for,
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


def _send_to_sign_in(error: ApiError) -> BaseResponse | None:
    """A browser whose token was refused goes to the sign-in page, told why
    when its token expired or is no longer valid; anything else is answered
    as it is (None)."""
    if error.code != 401 or error.reason not in TOKEN_PROBLEMS or not wants_html():
        return None
    told = TOKEN_PROBLEMS[error.reason][1]
    if told:
        flash(told, "error")
    return redirect(url_for("auth.login"), 303)


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

    API clients get the 401 JSON error; a browser is sent to the sign-in page,
    told why when its token has expired or is no longer valid.
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


def token_response(user: User, family: str | None = None) -> Response:
    """The JSON answer to a sign-in or a refresh: an access and a refresh token."""
    family = family or uuid.uuid4().hex
    refresh_token = issue_token(user, REFRESH, family)
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
@caller.password
def login() -> ResponseReturnValue:
    """Exchange HTTP Basic credentials for tokens; browsers get the sign-in page.
    ---
    get:
      security:
      - basic: []
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
        return render_template("login.html")
    attempt = caller.sign_in_attempt()
    user = authenticate(attempt.username, attempt.password)
    if user is None:
        raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)
    return token_response(user)


@bp.post("/login")
@limit_per_username
@limit_per_address
@caller.password
def login_form() -> ResponseReturnValue:
    """Sign in with a username and password, as a form or a JSON body.

    A browser is sent on to its files with the token in the URL; an API client
    gets the same JSON as ``GET /login``.
    ---
    post:
      security: []
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
    request_body()  # a body that is not an object is a 400
    attempt = caller.sign_in_attempt()
    user = authenticate(attempt.username, attempt.password)
    if user is not None and wants_html():
        token = issue_token(user, ACCESS, uuid.uuid4().hex)
        return redirect(url_for("files.index", token=token), 303)
    if user is not None:
        return token_response(user)
    if wants_html():
        page = render_template(
            "login.html",
            error="Wrong username or password",
            username=attempt.typed,
        )
        return page, 401
    raise ApiError(401, "Unable to verify", BASIC_CHALLENGE)


@bp.post("/logout")
@check_for_token
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
    if wants_html():
        flash("You are signed out", "success")
        return redirect(url_for("auth.login"), 303)
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

    @retry_on_conflict
    def rotate() -> User | None:
        """Retire the token and return its user; None when it was retired before."""
        if claims.get("typ") == REFRESH and isinstance(claims.get("fam"), str):
            if is_revoked(str(claims["jti"])):
                revoke_family(claims["fam"])
                return None
        user = user_for(claims, REFRESH)
        expiry = datetime.fromtimestamp(claims["exp"], UTC)
        if not retire_token(str(claims["jti"]), expiry):
            # Another request retired the same token a moment ago: a reuse too.
            revoke_family(claims["fam"])
            return None
        return user

    user = rotate()
    if user is None:
        current_app.logger.warning("Refresh token reused; family revoked")
        raise invalid_token("revoked")
    return token_response(user, claims["fam"])
