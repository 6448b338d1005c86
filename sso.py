"""Single sign-on's pages: to the identity provider and back (oidc.py does
the protocol), and linking an account to the provider or unlinking it.

Each trip to the provider is remembered in this browser's session (signed,
SameSite=Lax, which the provider's redirect back carries) under the state it
sends, with what it is for: a sign-in (and where to go after) or linking the
signed-in account. The way back takes each state once.
"""

import time

from flask import Blueprint, current_app, flash, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as BaseResponse

import audit
import caller
import oidc
import two_factor
import users
from authentication import check_for_token, limit_per_address
from errors import ApiError, no_content, wants_html
from models import User, change_account, db
from page_sessions import page_session, safe_target
from request_data import load_or_400, request_body
from schemas import password_check_schema, sso_start_query_schema
from session_tokens import is_revoked
from sign_ins import refuse_disabled, signed_in

bp = Blueprint("sso", __name__)

FLOWS = "lockbox_sso"
# Trips to the provider one browser may have under way at once (tabs).
MAX_FLOWS = 4
# How long a trip to the provider may take, its sign-in included.
FLOW_SECONDS = 600


def _configured_or_404() -> None:
    if not oidc.configured():
        raise ApiError(404, "Single sign-on is not set up on this site.")


def _to_provider(flow: dict) -> BaseResponse:
    """Send the browser to the provider, remembering ``flow`` (and when it
    started) under the state."""
    try:
        url, state = oidc.sign_in_url(url_for("sso.callback", _external=True))
    except oidc.ProviderDown:
        raise ApiError(503, oidc.DOWN_MESSAGE) from None
    flows = dict(session.get(FLOWS) or {})
    while len(flows) >= MAX_FLOWS:
        oidc.forget(next(iter(flows)))
        flows.pop(next(iter(flows)))
    flows[state] = {**flow, "at": int(time.time())}
    session[FLOWS] = flows
    return redirect(url, 303)


def _flow_coming_back() -> dict:
    """What the trip coming back to the callback was for, taken once: a 400
    for a state this browser did not send, or sent more than FLOW_SECONDS ago
    (a session cookie kept by whoever started it, replayed later)."""
    flows = dict(session.get(FLOWS) or {})
    flow = flows.pop(str(request.args.get("state", "")), None)
    session[FLOWS] = flows
    fresh = isinstance(flow, dict) and 0 <= time.time() - flow.get("at", 0) <= (
        FLOW_SECONDS
    )
    if not fresh:
        raise ApiError(
            400,
            "This sign-in was not started in this browser, was finished "
            "already, or took too long. Start again from the sign-in page.",
        )
    assert isinstance(flow, dict)
    return flow


@bp.get("/sso/login")
@caller.nobody
def start() -> ResponseReturnValue:
    """Sign in through the identity provider (a browser is sent there).
    ---
    get:
      security: []
      parameters:
      - in: query
        schema: SsoStartQuerySchema
      responses:
        303:
          description: To the identity provider's sign-in
        404: NoSingleSignOn
        503: ProviderDown
    """
    _configured_or_404()
    query = load_or_400(sso_start_query_schema, request.args.to_dict())
    return _to_provider({"for": "sign-in", "next": safe_target(query.get("next"))})


@bp.get("/sso/callback")
@caller.nobody
def callback() -> ResponseReturnValue:
    """Where the identity provider sends the browser back (code and state).
    ---
    get:
      security: []
      parameters:
      - in: query
        schema: SsoCallbackQuerySchema
      responses:
        303:
          description: Signed in, on to the files (or the account page)
        400:
          description: A sign-in not started here, answered twice, or refused
          content:
            application/json:
              schema: ErrorSchema
        403:
          description: No account for this person, or the provider said no
          content:
            application/json:
              schema: ErrorSchema
        404: NoSingleSignOn
        409:
          description: The person already signs in to another account
          content:
            application/json:
              schema: ErrorSchema
        503: ProviderDown
    """
    _configured_or_404()
    flow = _flow_coming_back()
    try:
        claims, refresh_token = oidc.finish_sign_in()
    except oidc.ProviderDown:
        raise ApiError(503, oidc.DOWN_MESSAGE) from None
    if flow.get("for") == "link":
        return _linked(flow, claims, refresh_token)
    user = oidc.account_of(claims)
    if user is None and not current_app.config["OIDC_CREATE_ACCOUNTS"]:
        raise ApiError(
            403,
            "No Lockbox account is linked to this identity provider account. "
            "Sign in with your password and link it from your account page, or "
            "ask your admin to let single sign-on create accounts.",
        )
    if user is None:
        user = oidc.create_account(claims)
        current_app.logger.info("Account %s made by single sign-on", user.id)
        audit.record("user.created", audit.target_user(user), "single sign-on", user)
    refuse_disabled(user)
    change_account(user, lambda fresh: oidc.signed_in(fresh, claims, refresh_token))
    _role_from_provider(user, claims)
    signed_in(user, "single sign-on")
    return page_session(user, keep=False, target=flow.get("next"), sso=True)


def _role_from_provider(user: User, claims: dict) -> None:
    """The role the provider's claims say (OIDC_ADMIN_CLAIM), given by the
    rules every role change follows (users.set_role): written to the audit
    log, an administrator's admin tokens ending, and never the last
    administrator taken away (then the role stays, and the log says so)."""
    role = oidc.role_by_claims(claims)
    if role is None or role == user.role:
        return
    try:
        users.set_role(user, role, actor=user)
    except ApiError as refused:
        current_app.logger.warning("The provider's role kept back: %s", refused)


def _linked(flow: dict, claims: dict, refresh_token: str | None) -> BaseResponse:
    """The account that asked to link, linked to the person who signed in at
    the provider; on to the account page."""
    user = db.session.get(User, int(flow.get("user", 0)))
    ended = is_revoked("family:" + str(flow.get("family")))
    if user is None or user.token_version != flow.get("version") or ended:
        raise ApiError(400, "You signed out meanwhile: sign in and link again.")

    def link(fresh: User) -> None:
        oidc.link(fresh, claims)
        oidc.signed_in(fresh, claims, refresh_token)

    change_account(user, link)
    audit.record("sso.linked", audit.target_user(user), actor=user)
    _role_from_provider(user, claims)
    name = current_app.config["OIDC_PROVIDER_NAME"]
    flash(f"Your account now also signs in with {name}.", "success")
    return redirect(url_for("account.account"), 303)


@bp.post("/account/sso/link")
@limit_per_address
@check_for_token
def link_account() -> ResponseReturnValue:
    """Link the signed-in account to a person at the identity provider.

    Needs the password (and a code, with two-factor sign-in on): whoever
    holds the link can sign in to the account, so a stolen session alone
    must not make one. An account linked already is refused: unlink first.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: PasswordCheckSchema
          application/x-www-form-urlencoded:
            schema: PasswordCheckSchema
      responses:
        303:
          description: To the identity provider's sign-in
        403:
          description: Wrong password or code
          content:
            application/json:
              schema: ErrorSchema
        409:
          description: The account is linked already
          content:
            application/json:
              schema: ErrorSchema
        429: TooManyAttempts
        404: NoSingleSignOn
        503: ProviderDown
    """
    _configured_or_404()
    body = load_or_400(password_check_schema, request_body())
    user = g.user
    if user.oidc_subject is not None:
        raise ApiError(409, oidc.ALREADY_LINKED)

    def confirmed(fresh: User) -> bool:
        return two_factor.owner_confirms(fresh, body["password"], body.get("code"))

    if not change_account(user, confirmed):
        raise ApiError(403, "Wrong password or code: nothing was linked.")
    flow = {
        "for": "link",
        "user": user.id,
        "version": user.token_version,
        "family": g.caller.record["fam"],
    }
    return _to_provider(flow)


@bp.post("/account/sso/unlink")
@check_for_token
def unlink_account() -> ResponseReturnValue:
    """Stop signing in through the identity provider (the password stays).
    ---
    post:
      responses:
        204:
          description: Unlinked
        303:
          description: A browser, back to its account page
        400:
          description: The account has no password to sign in with instead
          content:
            application/json:
              schema: ErrorSchema
    """
    change_account(g.user, oidc.unlink)
    audit.record("sso.unlinked", audit.target_user(g.user))
    if wants_html():
        flash("Your account no longer signs in through the provider.", "success")
        return redirect(url_for("account.account"), 303)
    return no_content()
