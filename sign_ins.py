"""The steps of a sign-in between a right password and a session: a
disabled account refused, the second factor asked for (or, when it is
required, set up), and the audit log's row of each outcome. The password
sign-in views (authentication.py) and single sign-on (sso.py) share them."""

from flask import current_app, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import update

import audit
import caller
import oidc
import two_factor
from errors import ApiError
from models import User, change_account, db, utcnow
from page_sessions import NO_STORE, next_after_sign_in, page_session

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


def how(user: User) -> str:
    """How a password sign-in was made, for the audit log."""
    return "password and second factor" if two_factor.is_on(user) else "password"


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


def second_factor_or_401(user: User, code: str | None) -> None:
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


def sign_in_page(**values: object) -> str:
    """The sign-in page: the password form, and the identity provider's
    button when single sign-on is set up."""
    name = current_app.config["OIDC_PROVIDER_NAME"] if oidc.configured() else None
    return render_template("login.html", sso_name=name, **values)


def page_second_factor(
    user: User, body: dict, attempt: caller.SignInAttempt
) -> ResponseReturnValue | None:
    """The page's second step after a right password: None when the sign-in
    may go on (no second factor, or its code is right); else the page that
    asks for the code, or (REQUIRE_TWO_FACTOR) sets the second factor up."""
    fields = {
        # The ticket keeps the time of the password it stands for.
        "ticket": attempt.ticket or two_factor.ticket_for(user),
        "next": next_after_sign_in(body.get("next")),
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
