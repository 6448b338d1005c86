"""The personal access token credential: an opaque, scoped token for scripts,
made, listed and revoked by its owner (access_tokens.py serves that) and
checked on every request that brings one (caller.py).

Only its SHA-256 is stored; it is shown once, when it is made. A token of an
owner who signed out everywhere or changed their password is no longer
trusted (credentials.owner_still_trusts), nor one past its expiry.
"""

import re
import secrets
import zlib
from datetime import timedelta

from cryptography.fernet import InvalidToken
from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy.exc import DBAPIError

import audit
import logs
from credentials import owner_still_trusts, sealer, secret_hash
from errors import ApiError
from models import ADMIN, MAX_INT_ID, AccessToken, User, db, is_conflict, utcnow
from schemas import SCOPES
from session_tokens import invalid_token

# "lbx_", 40 random base62 characters, and a CRC32 of them in 6 more, so that
# secret scanners can find one by its prefix and check it without asking us
# (as GitHub's tokens do).
PAT_PREFIX = "lbx_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PAT_RANDOM_LENGTH = 40
PAT_RE = re.compile(r"lbx_([0-9A-Za-z]{40})([0-9A-Za-z]{6})")
# How often a token's last use is written down: not on every request.
LAST_USED_PRECISION = timedelta(minutes=1)


def _base62(number: int, width: int) -> str:
    """``number`` in base62, ``width`` digits."""
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def new_access_token() -> str:
    """A fresh personal access token: prefix, random part, checksum."""
    body = "".join(secrets.choice(BASE62) for _ in range(PAT_RANDOM_LENGTH))
    return PAT_PREFIX + body + _base62(zlib.crc32(body.encode()), 6)


def access_token_hash(token: str) -> str:
    """What is stored of an access token. A fast hash is enough: the token has
    238 random bits, nothing to guess from."""
    return secret_hash(token)


ACCESS_TOKEN_AND_USER = (
    db.select(AccessToken, User)
    .join(User, User.id == AccessToken.user_id)
    .where(AccessToken.token_hash == bindparam("token_hash"))
)


def verify_access_token(token: str) -> tuple[User, AccessToken]:
    """The user a personal access token opens, and the token's row; else a 401.

    A token whose checksum does not match is refused without a query.
    """
    match = PAT_RE.fullmatch(token)
    if match is None or match[2] != _base62(zlib.crc32(match[1].encode()), 6):
        raise invalid_token()
    found = db.session.execute(
        ACCESS_TOKEN_AND_USER, {"token_hash": access_token_hash(token)}
    ).one_or_none()
    if found is None:
        raise invalid_token()
    access_token, user = found
    if not owner_still_trusts(access_token, user):
        raise invalid_token("disabled" if user.disabled_at else "revoked")
    if ADMIN in access_token.scope_list and user.role != ADMIN:
        # Its owner is no longer an administrator: the token stops at once.
        raise invalid_token("revoked")
    if access_token.expires_at is not None and access_token.expires_at <= utcnow():
        raise invalid_token("expired")
    _note_use(access_token)
    return user, access_token


def _note_use(access_token: AccessToken) -> None:
    """Write down that the token was used, at most once a minute."""
    now = utcnow()
    cutoff = now - LAST_USED_PRECISION
    if access_token.last_used_at is not None and access_token.last_used_at > cutoff:
        return
    try:
        db.session.execute(
            db.update(AccessToken)
            .where(
                AccessToken.id == access_token.id,
                (AccessToken.last_used_at.is_(None))
                | (AccessToken.last_used_at <= cutoff),
            )
            .values(last_used_at=now)
        )
        db.session.commit()
    except DBAPIError as error:
        # Another request of the same token wrote it a moment ago.
        db.session.rollback()
        if not is_conflict(error):
            raise
    access_token.last_used_at = now


# Characters of the token kept to recognise it: the prefix and 8 more.
SHOWN_CHARACTERS = len(PAT_PREFIX) + 8
# Tokens one account may hold at once.
MAX_TOKENS_PER_USER = 100
NO_EXPIRY_REFUSED = "expires_in: null (no expiry) is not allowed on this server"


def create_access_token(
    user: User, name: str, scopes: list[str], expires_in: int | None
) -> tuple[AccessToken, str]:
    """Make a token for ``user`` (committed); its row and the token itself.

    ``expires_in`` is seconds, or None for a token that never expires, which
    only PAT_ALLOW_NO_EXPIRY permits (ValueError otherwise).
    """
    if expires_in is None and not current_app.config["PAT_ALLOW_NO_EXPIRY"]:
        raise ValueError(NO_EXPIRY_REFUSED)
    if ADMIN in scopes and user.role != ADMIN:
        raise ApiError(
            403, "Only an administrator may make a token with the admin scope"
        )
    count = db.session.execute(
        db.select(db.func.count()).select_from(AccessToken).filter_by(user_id=user.id)
    ).scalar_one()
    if count >= MAX_TOKENS_PER_USER:
        raise ApiError(
            409, f"An account may hold {MAX_TOKENS_PER_USER} tokens; revoke some first"
        )
    token = new_access_token()
    now = utcnow()
    access_token = AccessToken(
        user_id=user.id,
        name=name,
        token_hash=access_token_hash(token),
        prefix=token[:SHOWN_CHARACTERS],
        # In SCOPES' order, each once.
        scopes=" ".join(scope for scope in SCOPES if scope in scopes),
        owner_version=user.token_version,
        created_at=now,
        expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
    )
    db.session.add(access_token)
    db.session.commit()
    audit.record("token.created", _target(access_token), access_token.scopes)
    return access_token, token


def tokens_of(user: User) -> list[AccessToken]:
    """A user's tokens, newest first."""
    return list(
        db.session.execute(
            db.select(AccessToken)
            .filter_by(user_id=user.id)
            .order_by(AccessToken.created_at.desc(), AccessToken.id.desc())
        ).scalars()
    )


def revoke(user: User, token_id: int) -> AccessToken:
    """Delete one of ``user``'s tokens (committed); 404 when there is none."""
    access_token = None
    if 1 <= token_id <= MAX_INT_ID:
        access_token = db.session.execute(
            db.select(AccessToken).filter_by(id=token_id, user_id=user.id)
        ).scalar_one_or_none()
    if access_token is None:
        raise ApiError(404, "Token not found")
    db.session.delete(access_token)
    db.session.commit()
    audit.record("token.revoked", _target(access_token))
    return access_token


def _target(access_token: AccessToken) -> str:
    """How the audit log names a token: never the token itself."""
    return (
        f"token {access_token.id} {access_token.prefix}… of user {access_token.user_id}"
    )


# Wherever one appears in a log line, sent any way at all.
logs.redact_secret(re.compile(r"(lbx_)[A-Za-z0-9]{8,}"))


# A token made with the page's form is shown by the page its redirect leads to
# (post/redirect/get: a reload makes no second token). It travels there in a
# cookie of its own, sealed with Fernet (AES-CBC and HMAC-SHA256) under a key
# derived from SECRET_KEY: the browser holds ciphertext that opens nothing,
# good for SHOWN_ONCE_SECONDS and taken back by the one page view that shows
# it.
NEW_TOKEN_COOKIE = "lockbox_new_token"
SHOWN_ONCE_SECONDS = 120
NEW_TOKEN_PURPOSE = b"lockbox new token"


def seal_new_token(access_token: AccessToken, token: str) -> str:
    """``token``, just made as ``access_token``, sealed for its one showing."""
    sealed = sealer(NEW_TOKEN_PURPOSE).encrypt(
        f"{access_token.id}:{token}".encode("ascii")
    )
    return sealed.decode("ascii")


def unseal_new_token(sealed: str, user: User) -> str | None:
    """The new token a sealed cookie holds, if it is ``user``'s, still exists
    and was made less than SHOWN_ONCE_SECONDS ago; else None."""
    try:
        plain = sealer(NEW_TOKEN_PURPOSE).decrypt(
            sealed.encode("ascii"), ttl=SHOWN_ONCE_SECONDS
        )
        token_id, _, token = plain.decode("ascii").partition(":")
        access_token = db.session.get(AccessToken, int(token_id))
    except (InvalidToken, UnicodeError, ValueError):
        return None
    if access_token is None or access_token.user_id != user.id:
        return None
    if access_token.token_hash != access_token_hash(token):
        return None
    return token
