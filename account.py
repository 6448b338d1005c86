"""The account: ``GET /account`` (who the caller is, what their files take
and what they may keep, quotas.py works it out; a browser gets the account
page), and its sign-in settings: the second factor (two_factor.py) and the
link to the identity provider (sso.py)."""

from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue

import audit
import oidc
import policies
import two_factor
from authentication import check_for_token, limit_per_address
from config import parse_duration
from errors import ApiError, no_content, wants_html
from models import User, change_account
from page_sessions import NO_STORE
from quotas import account_usage
from request_data import load_or_400, request_body
from schemas import (
    account_schema,
    lifetime_schema,
    password_check_schema,
    recovery_codes_schema,
    two_factor_code_schema,
    two_factor_off_schema,
    two_factor_setup_schema,
)

bp = Blueprint("account", __name__)

# A second factor guards a password; an account made by single sign-on has none.
NO_PASSWORD = (
    "This account signs in through its identity provider, which asks for any "
    "second factor."
)


@bp.get("/account")
@check_for_token(scope="files:read")
def account() -> ResponseReturnValue:
    """The caller's name, role, sign-in settings, storage used, quota and the
    largest file allowed (a browser: the account page).
    ---
    get:
      responses:
        200:
          description: Usage and limits
          content:
            application/json:
              schema: AccountSchema
            text/html: {}
    """
    user = g.user
    usage = {
        **account_usage(user),
        "role": user.role,
        "has_password": user.password_hash is not None,
        "single_sign_on": user.oidc_subject is not None,
        "two_factor": two_factor.is_on(user),
        "file_lifetime_seconds": user.file_lifetime_seconds,
        "max_file_seconds": policies.current().max_file_seconds,
    }
    if not wants_html():
        return jsonify(account_schema.dump(usage))
    return render_template(
        "account.html",
        usage=usage,
        sso_name=current_app.config["OIDC_PROVIDER_NAME"]
        if oidc.configured()
        else None,
        codes_left=two_factor.recovery_codes_left(g.user),
        required=_required(user),
        **_lifetime_choice(user),
    )


def _lifetime_choice(user: User) -> dict[str, Any]:
    """What the account page says and offers of its files' lifetime."""
    seconds = policies.default_lifetime(user)
    offered = policies.offered_lifetimes()
    chosen = next(
        (
            value
            for value, _ in offered
            if (value == policies.NEVER and seconds is None)
            or (value != policies.NEVER and parse_duration(value) == seconds)
        ),
        None,
    )
    if chosen is None:
        # A default the page does not offer (set through the API) is shown
        # first and chosen: the form sent back unchanged keeps it.
        chosen = policies.NEVER if seconds is None else str(seconds)
        offered = [(chosen, policies.lifetime_words(seconds).capitalize()), *offered]
    limit = policies.current().max_file_seconds
    return {
        "lifetimes": offered,
        "lifetime_chosen": chosen,
        "lifetime_now": policies.lifetime_words(seconds).capitalize(),
        "max_lifetime": policies.lifetime_words(limit),
    }


@bp.post("/account/file-lifetime")
@check_for_token(scope="files:write")
def change_file_lifetime() -> ResponseReturnValue:
    """How long the caller's new files are kept unless an upload says:
    seconds, a duration such as 12h or 7d, or "never"; within the server's
    policy. Files already kept keep their expiry.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: LifetimeSchema
          application/x-www-form-urlencoded:
            schema: LifetimeSchema
      responses:
        200:
          description: The account, as it is now
          content:
            application/json:
              schema: AccountSchema
        303:
          description: A browser's form post, sent back to the account page
    """
    body = load_or_400(lifetime_schema, request_body())
    seconds = policies.lifetime_seconds(body["lifetime"])
    policies.check_default_lifetime(seconds)

    def keep(user: User) -> None:
        user.file_lifetime_seconds = seconds

    change_account(g.user, keep)
    if wants_html():
        flash("New files are kept " + policies.lifetime_words(seconds), "success")
        return redirect(url_for("account.account"), 303)
    return account()


def _required(user: User) -> bool:
    """Whether this site requires ``user`` to keep a second factor."""
    return bool(
        current_app.config["REQUIRE_TWO_FACTOR"]
    ) or policies.two_factor_required(user)


def _setup_page(secret: str, error: str | None = None) -> str:
    uri = two_factor.setup_uri(g.user, secret)
    return render_template(
        "two_factor_setup.html",
        secret=secret,
        uri=uri,
        qr_code=two_factor.qr_code_svg(uri),
        error=error,
        signing_in=False,
    )


@bp.post("/account/two-factor")
@limit_per_address
@check_for_token
def begin_two_factor() -> ResponseReturnValue:
    """Start setting up a second factor: a new secret for the authenticator
    app (a browser: the page with its QR code). It is on once its first
    code is confirmed. Needs the password: a stolen session alone must not
    set up a factor of its own and lock the owner out.
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
        200:
          description: The secret, and the URI a QR code holds
          content:
            application/json:
              schema: TwoFactorSetupSchema
            text/html: {}
        400:
          description: The account has no password to guard
          content:
            application/json:
              schema: ErrorSchema
        403:
          description: Wrong password
          content:
            application/json:
              schema: ErrorSchema
        409: TwoFactorOn
        429: TooManyAttempts
    """
    body = load_or_400(password_check_schema, request_body())
    user = g.user
    if user.password_hash is None:
        raise ApiError(400, NO_PASSWORD)
    if two_factor.is_on(user):
        raise ApiError(409, "Two-factor sign-in is on already; turn it off first.")
    if not two_factor.owner_confirms(user, body["password"], None):
        raise ApiError(403, "Wrong password: nothing was set up.")

    secret = change_account(user, two_factor.begin)
    if wants_html():
        return _setup_page(secret), 200, NO_STORE
    uri = two_factor.setup_uri(user, secret)
    response = jsonify(
        two_factor_setup_schema.dump({"secret": secret, "otpauth_uri": uri})
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/account/two-factor/confirm")
@check_for_token
def confirm_two_factor() -> ResponseReturnValue:
    """Turn the second factor on with its first code: the recovery codes,
    shown this once.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: TwoFactorCodeSchema
          application/x-www-form-urlencoded:
            schema: TwoFactorCodeSchema
      responses:
        200:
          description: On; ten single-use recovery codes
          content:
            application/json:
              schema: RecoveryCodesSchema
            text/html: {}
        400:
          description: Wrong code, or nothing being set up
          content:
            application/json:
              schema: ErrorSchema
        409: TwoFactorOn
    """
    code = load_or_400(two_factor_code_schema, request_body())["code"]
    user = g.user
    if user.password_hash is None:
        raise ApiError(400, NO_PASSWORD)
    if two_factor.is_on(user):
        raise ApiError(409, "Two-factor sign-in is on already.")
    secret = two_factor.secret_of(user)
    if secret is None:
        raise ApiError(400, "Nothing is being set up: start again from your account.")

    codes = change_account(user, lambda fresh: two_factor.confirm(fresh, code))
    wrong = (
        "That code is not right: check that the phone's clock is right, and try again."
    )
    if codes is None and wants_html():
        return _setup_page(secret, wrong), 400, NO_STORE
    if codes is None:
        raise ApiError(400, wrong)
    current_app.logger.info("Two-factor sign-in turned on")
    audit.record("two_factor.enabled", audit.target_user(user))
    if wants_html():
        page = render_template("recovery_codes.html", codes=codes, next_address=None)
        return page, 200, NO_STORE
    response = jsonify(recovery_codes_schema.dump({"recovery_codes": codes}))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/account/two-factor/disable")
@limit_per_address
@check_for_token
def disable_two_factor() -> ResponseReturnValue:
    """Turn the second factor off: needs the password and a code (or a
    recovery code); counted with the sign-in attempts.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: TwoFactorOffSchema
          application/x-www-form-urlencoded:
            schema: TwoFactorOffSchema
      responses:
        204:
          description: Off
        303:
          description: A browser, back to its account page
        400:
          description: Two-factor sign-in is not on
          content:
            application/json:
              schema: ErrorSchema
        403:
          description: Wrong password or code
          content:
            application/json:
              schema: ErrorSchema
        409:
          description: Two factors are required on this site
          content:
            application/json:
              schema: ErrorSchema
        429: TooManyAttempts
    """
    body = load_or_400(two_factor_off_schema, request_body())
    user = g.user
    if not two_factor.is_on(user):
        raise ApiError(400, "Two-factor sign-in is not on.")
    if _required(user):
        raise ApiError(409, "This site requires two-factor sign-in: it stays on.")

    def turn_off(fresh: User) -> bool:
        if not two_factor.owner_confirms(fresh, body["password"], body["code"]):
            return False
        two_factor.turn_off(fresh)
        return True

    if not change_account(user, turn_off):
        raise ApiError(403, "Wrong password or code: two-factor sign-in stays on.")
    current_app.logger.info("Two-factor sign-in turned off")
    audit.record("two_factor.disabled", audit.target_user(user))
    if wants_html():
        flash("Two-factor sign-in is off.", "success")
        return redirect(url_for("account.account"), 303)
    return no_content()
