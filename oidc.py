"""Single sign-on: the identity provider's people (OpenID Connect), through
Authlib's Flask client.

The provider is named by OIDC_ISSUER; everything else (its endpoints, its
keys) comes from its discovery document, fetched the first time it is
needed, so that the app starts while the provider is down. A sign-in is the
authorization code flow with PKCE (S256), ``state`` and ``nonce``, answered
in the query string; Authlib checks the state against this browser's
session, exchanges the code, and checks the ID token's signature (the
provider's published keys), issuer, audience, expiry and nonce.

An account is the provider's person by ``iss`` and ``sub`` only, never by
e-mail (an address can change hands; a subject cannot). A first sign-in
makes an account only when OIDC_CREATE_ACCOUNTS says so. When
OIDC_ADMIN_CLAIM is set, each sign-in makes the account an admin, or not,
by that claim. A session made through the provider checks back with it at
least every OIDC_RECHECK_SECONDS (``recheck``): with the refresh token it
gave, or by going through the provider again; a person the provider no
longer lets in loses the session then.
"""

import re
import unicodedata
from datetime import timedelta
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, session
from joserfc.errors import JoseError
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError

import policies
from credentials import seal_for, unseal_for
from errors import ApiError
from models import User, change_account, db, utcnow
from passwords import USERNAME_RE
from session_tokens import revoke_all_tokens

CLIENT_NAME = "provider"
EXTENSION = "lockbox.oidc"
REFRESH_PURPOSE = b"lockbox oidc refresh token"
# The scopes asked for; offline_access too when the provider offers it (a
# refresh token to check back with).
SCOPES = ("openid", "profile", "email")
# A username made from the provider's name leaves room for " -NN".
USERNAME_ROOM = 72


class ProviderDown(Exception):
    """The provider could not be reached, or answered nonsense."""


UNVERIFIED = "The identity provider's answer could not be verified."
# What the person is told when the provider cannot be reached.
DOWN_MESSAGE = (
    "Your identity provider can't be reached right now. Try again in a few "
    "minutes, or sign in with your password if your account has one."
)


def configured() -> bool:
    """Whether single sign-on is set up on this site."""
    return bool(current_app.config.get("OIDC_ISSUER"))


def init_app(app: Flask) -> None:
    """Register the provider with Authlib's Flask client, when configured."""
    if not app.config.get("OIDC_ISSUER"):
        return
    oauth = OAuth(app)
    oauth.register(
        CLIENT_NAME,
        client_id=app.config["OIDC_CLIENT_ID"],
        client_secret=app.config["OIDC_CLIENT_SECRET"],
        server_metadata_url=app.config["OIDC_ISSUER"]
        + "/.well-known/openid-configuration",
        client_kwargs={
            "code_challenge_method": "S256",
            "default_timeout": app.config["OIDC_TIMEOUT_SECONDS"],
        },
    )
    app.extensions[EXTENSION] = oauth


def client() -> Any:
    """The registered provider (Authlib's Flask OAuth 2 app)."""
    return current_app.extensions[EXTENSION].create_client(CLIENT_NAME)


def _metadata() -> dict:
    """The provider's discovery document; ProviderDown when it can't be had,
    or when it names another issuer than OIDC_ISSUER (OpenID Connect
    Discovery 1.0, section 4.3)."""
    try:
        metadata = client().load_server_metadata()
    except (requests.RequestException, ValueError) as error:
        current_app.logger.warning("OpenID provider unreachable: %s", error)
        raise ProviderDown from error
    if str(metadata.get("issuer", "")).rstrip("/") != current_app.config["OIDC_ISSUER"]:
        current_app.logger.warning("OpenID provider names another issuer")
        raise ProviderDown
    return metadata


def forget(state: str) -> None:
    """Drop what Authlib keeps in the browser's session for a trip to the
    provider that will not come back (the session cookie stays small)."""
    client().framework.clear_state_data(session, state)


def sign_in_url(redirect_uri: str) -> tuple[str, str]:
    """Where to send the browser to sign in at the provider, and the state
    that will come back; the state, nonce and PKCE verifier are kept in the
    browser's session by Authlib. ProviderDown when it can't be reached."""
    offered = _metadata().get("scopes_supported") or ()
    scopes = [*SCOPES, *(["offline_access"] if "offline_access" in offered else [])]
    provider = client()
    try:
        found = provider.create_authorization_url(redirect_uri, scope=" ".join(scopes))
    except (requests.RequestException, ValueError) as error:
        raise ProviderDown from error
    provider.save_authorize_data(redirect_uri=redirect_uri, **found)
    return found["url"], found["state"]


def finish_sign_in() -> tuple[dict, str | None]:
    """The verified ID token's claims of the sign-in coming back to the
    callback, and the provider's refresh token (or None). A 400 for a sign-in
    that was not started here, was answered already, or whose ID token does
    not hold up; ProviderDown when the provider can't be reached."""
    try:
        token = client().authorize_access_token()
    except AuthlibBaseError as error:
        current_app.logger.info("Single sign-on refused: %s", error.error)
        if error.error in ("access_denied", "login_required", "consent_required"):
            raise ApiError(403, "The identity provider did not sign you in.") from None
        raise ApiError(
            400,
            "This sign-in could not be completed. Start again from the sign-in page.",
        ) from None
    except JoseError as error:
        current_app.logger.warning("ID token refused: %s", error)
        raise ApiError(400, UNVERIFIED) from None
    except requests.RequestException as error:
        current_app.logger.warning("OpenID provider unreachable: %s", error)
        raise ProviderDown from error
    claims = token.get("userinfo")
    if (
        not claims
        or claims.get("iss", "").rstrip("/") != current_app.config["OIDC_ISSUER"]
    ):
        raise ApiError(400, UNVERIFIED)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise ApiError(400, UNVERIFIED)
    if subject != subject.strip() or not subject.isprintable():
        # MariaDB's PAD SPACE collation would find "abc" for "abc ".
        raise ApiError(400, UNVERIFIED)
    return dict(claims), token.get("refresh_token")


# --- accounts -----------------------------------------------------------------


def account_of(claims: dict) -> User | None:
    """The account linked to the provider's person these claims name."""
    return db.session.execute(
        db.select(User).filter_by(
            oidc_issuer=current_app.config["OIDC_ISSUER"], oidc_subject=claims["sub"]
        )
    ).scalar_one_or_none()


def clean_username(name: object) -> str:
    """A username Lockbox accepts made from the provider's name for the
    person: letters outside ASCII lose their accents or go, other characters
    outside the rules become "_"; "user" when nothing is left."""
    text = name if isinstance(name, str) else ""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9_.@+-]", "_", text)
    text = re.sub(r"^[^A-Za-z0-9]+", "", text)[:USERNAME_ROOM]
    return text if USERNAME_RE.fullmatch(text) else "user"


def _free_username(base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... the first that no account has
    in any case ("Admin" is not given beside "admin": people and link
    visitors would take one for the other)."""
    lower = func.lower(User.username)
    taken = {
        name.lower()
        for name in db.session.execute(
            db.select(User.username).where(
                (lower == base.lower())
                | lower.startswith(base.lower() + "-", autoescape=True)
            )
        ).scalars()
    }
    if base.lower() not in taken:
        return base
    number = 2
    while f"{base}-{number}".lower() in taken:
        number += 1
    return f"{base}-{number}"


def is_admin_by_claims(claims: dict) -> bool | None:
    """Whether the claims make their person an admin (OIDC_ADMIN_CLAIM holds
    OIDC_ADMIN_VALUE, or is a list with it); None when no claim is set up."""
    claim = current_app.config.get("OIDC_ADMIN_CLAIM")
    if not claim:
        return None
    value = claims.get(claim)
    wanted = current_app.config["OIDC_ADMIN_VALUE"]
    if isinstance(value, list):
        return wanted in value
    return value == wanted or value is True and wanted == "true"


def create_account(claims: dict) -> User:
    """A new account for the provider's person (committed): its username from
    ``preferred_username`` (else the e-mail's name), made to fit the rules,
    with a number after it when the name is taken. Two first sign-ins at
    once make one account: the loser finds the winner's."""
    base = clean_username(
        claims.get("preferred_username") or str(claims.get("email", "")).split("@")[0]
    )
    for _ in range(5):
        user = policies.new_account(
            User(
                username=_free_username(base),
                password_hash=None,
                oidc_issuer=current_app.config["OIDC_ISSUER"],
                oidc_subject=claims["sub"],
            )
        )
        db.session.add(user)
        try:
            db.session.commit()
            return user
        except IntegrityError:
            db.session.rollback()
            existing = account_of(claims)
            if existing is not None:
                return existing
    raise ApiError(409, "Could not make an account; try signing in again.")


def link(user: User, claims: dict) -> None:
    """Link ``user`` to the provider's person (not committed); a 409 when that
    person signs in to another account already."""
    if user.oidc_subject is not None:
        raise ApiError(409, ALREADY_LINKED)
    other = account_of(claims)
    if other is not None and other.id != user.id:
        raise ApiError(
            409,
            "That identity provider account already signs in to another "
            "Lockbox account.",
        )
    user.oidc_issuer = current_app.config["OIDC_ISSUER"]
    user.oidc_subject = claims["sub"]


ALREADY_LINKED = (
    "This account signs in through the provider already; unlink it first to "
    "link another account there."
)


def unlink(user: User) -> None:
    """Stop signing in to ``user`` through the provider (not committed); a 400
    for an account with no password, which could then not sign in at all."""
    if user.password_hash is None:
        raise ApiError(
            400,
            "This account has no password: it can sign in only through the provider.",
        )
    user.oidc_issuer = user.oidc_subject = None
    user.oidc_refresh_token = None
    user.oidc_checked_at = None


def signed_in(user: User, claims: dict, refresh_token: str | None) -> None:
    """Record a sign-in through the provider (not committed): checked now,
    its refresh token kept sealed. The role the claims say (role_by_claims)
    is the caller's to give, by the rules every role change follows."""
    user.oidc_checked_at = utcnow()
    if refresh_token:
        user.oidc_refresh_token = seal_for(user.id, REFRESH_PURPOSE, refresh_token)


def role_by_claims(claims: dict) -> str | None:
    """The role the provider's claims give (OIDC_ADMIN_CLAIM), or None when
    they say nothing of it."""
    admin = is_admin_by_claims(claims)
    return None if admin is None else ("admin" if admin else "user")


# --- checking back --------------------------------------------------------------


def _refresh_token_of(user: User) -> str | None:
    if not user.oidc_refresh_token:
        return None
    return unseal_for(user.id, REFRESH_PURPOSE, user.oidc_refresh_token)


def recheck_due(user: User) -> bool:
    """Whether a session ``user`` made through the provider must check back
    with it before it is renewed."""
    checked = user.oidc_checked_at
    every = timedelta(seconds=current_app.config["OIDC_RECHECK_SECONDS"])
    return checked is None or utcnow() - checked >= every


def recheck(user: User) -> bool | None:
    """Ask the provider whether ``user``'s person may still sign in, with its
    refresh token (not committed): True, and the check recorded; False when
    the provider refuses (the person was disabled there, or unlinked here);
    None when there is no refresh token to ask with (the browser must go
    through the provider again). ProviderDown when it can't be reached."""
    if user.oidc_subject is None or not configured():
        return False
    refresh_token = _refresh_token_of(user)
    if refresh_token is None:
        return None
    _metadata()
    try:
        token = client().fetch_access_token(
            grant_type="refresh_token", refresh_token=refresh_token
        )
    except AuthlibBaseError as error:
        current_app.logger.info("Provider refused the refresh: %s", error.error)
        user.oidc_refresh_token = None
        return False
    except requests.RequestException as error:
        current_app.logger.warning("OpenID provider unreachable: %s", error)
        raise ProviderDown from error
    user.oidc_checked_at = utcnow()
    if token.get("refresh_token"):
        user.oidc_refresh_token = seal_for(
            user.id, REFRESH_PURPOSE, token["refresh_token"]
        )
    return True


def still_vouches(user: User) -> bool | None:
    """Whether the provider still vouches for ``user``'s person, asking it
    (committed) when OIDC_RECHECK_SECONDS have passed since it last did:
    True; False when it refuses, and then, for an account that has no
    password (the provider is its only way in), every token of the account
    ends, its API tokens too; None when there is no refresh token to ask
    with. ProviderDown when it can't be reached."""
    if user.oidc_subject is not None and not recheck_due(user):
        return True

    def ask(fresh: User) -> bool | None:
        answer = recheck(fresh)
        if answer is False and fresh.password_hash is None:
            revoke_all_tokens(fresh)
        return answer

    return change_account(user, ask)
