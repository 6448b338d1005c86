"""The session credential: JSON Web Tokens. A signed-in session holds a
short-lived access token and a refresh token (HS256 under SECRET_KEY, or a
key in SECRET_KEY_FALLBACKS); this module issues them, checks them, and
keeps what revokes them (a token's id, a whole sign-in's family, or every
token of an account through its token version).

Tokens travel as ``Authorization: Bearer`` or ``?token=`` (caller.py reads
them), which logs.py redacts wherever they appear.
"""

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from flask import current_app
from sqlalchemy import ColumnElement, bindparam, func
from sqlalchemy.dialects import mysql, sqlite

import logs
from errors import ApiError
from models import (
    AccessToken,
    RevokedToken,
    User,
    db,
    new_token_version,
    retry_on_conflict,
    rowcount,
    utcnow,
)

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "typ", "ver"]
# Clock skew tolerated between the machines that issue and check tokens.
LEEWAY_SECONDS = 10
# Tokens are a few hundred bytes; anything far larger is not ours.
MAX_TOKEN_LENGTH = 4096

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="Lockbox"'}


ACCESS = "access"
REFRESH = "refresh"

# A page session's refresh token, kept by the browser (page_sessions.py sets
# it, caller.py reads it).
RENEW_COOKIE = "lockbox_renew"


def issue_token(
    user: User,
    kind: str,
    family: str,
    jti: str | None = None,
    keep: bool = False,
    sso: bool = False,
) -> str:
    """Sign a token for ``user``: a short-lived access token or a refresh token.

    ``ver`` ties it to the account's random token version, checked on every
    request: the token opens this account only, and dies with the version when
    every token of the account is revoked; ``fam`` names the chain of
    refresh tokens it descends from, so that a reused refresh token can revoke
    the whole chain with the access tokens issued alongside it. ``jti`` is
    random unless given (a refresh token's successor, see ``rotate``);
    ``keep`` marks a page session's refresh token that the browser keeps
    beyond its own session ("keep me signed in"), and its successors with it;
    ``sso`` marks a sign-in made through the identity provider, whose
    renewals check back with it (oidc.recheck).
    """
    now = utcnow()
    lifetime = current_app.config[
        "TOKEN_TTL_SECONDS" if kind == ACCESS else "REFRESH_TTL_SECONDS"
    ]
    jti = jti or uuid.uuid4().hex
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "iat": now,
        "exp": now + timedelta(seconds=lifetime),
        "jti": jti,
        "iss": current_app.config["JWT_ISSUER"],
        "typ": kind,
        "ver": user.token_version,
        "fam": family,
    }
    if keep:
        claims["keep"] = True
    if sso:
        claims["sso"] = True
    return jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)


# Why a token is refused: the API's message, and what a browser sent back to
# the sign-in page is told (nothing when it simply had no token).
TOKEN_PROBLEMS = {
    "missing": ("Token missing", None),
    "invalid": ("Invalid token", "Your sign-in is no longer valid — sign in again"),
    "expired": ("Token expired", "Your session expired — sign in again"),
    "revoked": ("Token revoked", "You signed out — sign in again"),
    "disabled": (
        "Account disabled",
        "Your account is disabled — ask your administrator",
    ),
}


def invalid_token(reason: str = "invalid") -> ApiError:
    """The 401 every token failure answers with; ``reason`` is a TOKEN_PROBLEMS key."""
    return ApiError(401, TOKEN_PROBLEMS[reason][0], BEARER_CHALLENGE, reason=reason)


def decode(token: str, expired_ok: bool = False) -> dict:
    """Verify signature and registered claims with the current key or an old one.

    ``expired_ok``: a token past its expiry is accepted too, to learn whose it
    was (a page renewed, a session signed out); it opens nothing.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token()
    config = current_app.config
    for key in [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=current_app.config["JWT_ISSUER"],
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS, "verify_exp": not expired_ok},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise invalid_token("expired") from None
        except jwt.InvalidTokenError:
            raise invalid_token() from None
    raise invalid_token()


# Statements used on every request are built once and run with parameters:
# building one costs more than running it.
ANY_REVOKED = (
    db.select(RevokedToken.jti)
    .where(RevokedToken.jti.in_(bindparam("names", expanding=True)))
    .exists()
)
IS_REVOKED = db.select(ANY_REVOKED)
# The user and the revocation list, both checked, in one round trip.
USER_AND_REVOKED = db.select(User, ANY_REVOKED).where(User.id == bindparam("user_id"))


def is_revoked(*names: str) -> bool:
    """Whether any of these token ids or family names has been revoked."""
    return db.session.execute(IS_REVOKED, {"names": list(names)}).scalar_one()


def verify_token(token: str, kind: str = ACCESS) -> tuple[User, dict]:
    """Check a token's signature, claims and revocation; its user and claims.

    Anything wrong is a 401: "Token expired", "Token revoked" or "Invalid token".
    """
    claims = decode(token)
    return user_for(claims, kind), claims


def user_for(claims: dict, kind: str, retired_ok: bool = False) -> User:
    """The user of verified claims of this kind, unless revoked; else a 401.
    ``retired_ok``: the token itself may have been retired (its family and
    the account's token version are still checked)."""
    subject = claims["sub"]
    if not (subject.isascii() and subject.isdigit() and len(subject) <= 18):
        raise invalid_token()
    if claims["typ"] != kind or not isinstance(claims.get("fam"), str):
        raise invalid_token()
    names = ["family:" + claims["fam"]]
    if not retired_ok:
        names.append(str(claims["jti"]))
    found = db.session.execute(
        USER_AND_REVOKED, {"user_id": int(subject), "names": names}
    ).one_or_none()
    if found is None:
        raise invalid_token()
    user, revoked = found
    if claims.get("ver") != user.token_version or revoked:
        raise invalid_token("revoked")
    if user.disabled_at is not None:
        raise invalid_token("disabled")
    return user


def _record_revocation(name: str, expires_at: datetime, extend: bool) -> int:
    """Insert a revocation in one statement, in the database's own upsert form;
    how many rows it inserted.

    A row already there is kept as it is, or (``extend``) kept with the later
    of the two expiry times. Never a read then a write: two requests at once
    cannot both insert, and neither fails on the primary key.
    """
    dialect = db.session.get_bind().dialect.name
    insert: sqlite.Insert | mysql.Insert
    later: ColumnElement[Any]
    if dialect == "sqlite":
        insert = sqlite.insert(RevokedToken).values(jti=name, expires_at=expires_at)
        if extend:
            later = func.max(RevokedToken.expires_at, insert.excluded.expires_at)
            insert = insert.on_conflict_do_update(
                index_elements=["jti"], set_={"expires_at": later}
            )
        else:
            insert = insert.on_conflict_do_nothing(index_elements=["jti"])
    elif dialect in ("mysql", "mariadb"):
        insert = mysql.insert(RevokedToken).values(jti=name, expires_at=expires_at)
        if extend:
            later = func.greatest(RevokedToken.expires_at, insert.inserted.expires_at)
            insert = insert.on_duplicate_key_update(expires_at=later)
        else:
            insert = insert.prefix_with("IGNORE")
    else:
        raise NotImplementedError(f"No upsert for the {dialect} dialect")
    return rowcount(db.session.execute(insert))


def retire_token(jti: str, expires_at: datetime) -> bool:
    """Revoke one token id until ``expires_at``; False when it was revoked
    already, by this request's rival too (not committed)."""
    return _record_revocation(jti, expires_at, extend=False) == 1


# A refresh token retired by a page's renewal is recorded a second time under
# this prefix, kept for the grace window only.
RENEWED = "renewed:"


def successor_id(jti: str) -> str:
    """The id of the refresh token that replaces refresh token ``jti``. Always
    the same for the same token, so that pages renewing with it at the same
    moment all get the one successor, and the chain does not fork."""
    return hashlib.sha256(f"successor:{jti}".encode("ascii")).hexdigest()[:32]


def rotate(claims: dict, grace_seconds: int = 0) -> tuple[User, str] | None:
    """Retire a verified refresh token: its user, and its successor's id.

    A token retired before means a copy is in use: None, and its whole family
    is revoked, unless (``grace_seconds``) a renewal retired it less than that
    long ago and its successor is still unused: then the same successor again.
    Pages (tabs, or a browser restoring them) renewing at the same moment with
    the same cookie are one person, not a thief. Anything else wrong with the
    token (its family revoked, the account's tokens all ended) is a 401.
    """
    if claims.get("typ") != REFRESH or not isinstance(claims.get("fam"), str):
        raise invalid_token()
    jti, family = str(claims["jti"]), claims["fam"]
    expiry = datetime.fromtimestamp(claims["exp"], UTC)

    @retry_on_conflict
    def retire() -> User | None:
        """The user, once the token is retired here; None if it was before."""
        if is_revoked(jti):
            return None
        # Whether the token was retired is the INSERT's to say: a rival may
        # retire it between these reads (SQLite reads without a snapshot).
        user = user_for(claims, REFRESH, retired_ok=True)
        if not retire_token(jti, expiry):
            return None  # another request retired it a moment ago
        if grace_seconds:
            until = utcnow() + timedelta(seconds=grace_seconds)
            _record_revocation(RENEWED + jti, until, extend=False)
        return user

    @retry_on_conflict
    def retired_before() -> User | None:
        """In a transaction of its own, which sees the retirement that came
        first: the user within the grace window, else None and the family
        revoked."""
        renewed_until = db.session.execute(
            db.select(RevokedToken.expires_at).where(RevokedToken.jti == RENEWED + jti)
        ).scalar_one_or_none()
        in_grace = renewed_until is not None and renewed_until > utcnow()
        if grace_seconds and in_grace and not is_revoked(successor_id(jti)):
            return user_for(claims, REFRESH, retired_ok=True)
        revoke_family(family)
        return None

    user = retire() or retired_before()
    return None if user is None else (user, successor_id(jti))


def revoke_family(family: str) -> None:
    """Revoke every token of a sign-in, past and future (not committed).

    Refresh tokens of a family keep being issued until it is revoked, each
    living REFRESH_TTL_SECONDS, so no token of it can outlive now plus the
    longest lifetime: the revocation is kept (at least) that long, and a later
    revocation of the same family extends an earlier one. Used by sign-out, by
    the detection of a reused refresh token and by a lost refresh race alike.
    """
    config = current_app.config
    lifetime = max(config["REFRESH_TTL_SECONDS"], config["TOKEN_TTL_SECONDS"])
    until = utcnow() + timedelta(seconds=lifetime + LEEWAY_SECONDS)
    _record_revocation("family:" + family, until, extend=True)


def revoke_all_tokens(user: User) -> None:
    """End every token the account holds, on every device, its personal access
    tokens and its share links too (not committed).

    The new version alone ends them all (each carries the version it was made
    under); the access tokens are deleted as well, so that no list shows them.
    """
    user.token_version = new_token_version()
    db.session.execute(db.delete(AccessToken).where(AccessToken.user_id == user.id))


def prune_revoked() -> int:
    """Forget revocations of tokens that have expired anyway; how many."""
    cutoff = utcnow() - timedelta(seconds=LEEWAY_SECONDS)
    result = db.session.execute(
        db.delete(RevokedToken).where(RevokedToken.expires_at < cutoff)
    )
    return rowcount(result)


# A JSON Web Token wherever it appears (its header always begins {"alg" or
# {"typ", "eyJ" in base64url): logs.py already hides ?token=, refresh_token=
# and Authorization credentials, the ways a token travels; this hides one
# anywhere else a line may quote it.
logs.redact_secret(
    re.compile(r"(eyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
)
