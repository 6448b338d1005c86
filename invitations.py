"""The invitation credential: the random secret in ``/invite/<secret>``, a
single-use link that lets a person set their account's password: a new
account an administrator made, or a reset of a forgotten password.

Only its SHA-256 is stored. It works once (a conditional UPDATE marks it
used, so of two uses at once one wins), for INVITATION_SECONDS, and only for
an account that is not disabled; setting the password through it ends every
session and token of the account (a new token version), and a newer
invitation for the same account replaces the older ones.
"""

import re
import secrets
from datetime import timedelta

from flask import current_app, url_for
from sqlalchemy import update

import logs
from credentials import secret_hash
from errors import ApiError
from models import Invitation, User, db, rowcount, utcnow
from passwords import hash_password
from session_tokens import revoke_all_tokens

# 256 random bits, URL-safe: 43 characters.
SECRET_BYTES = 32
SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")
INVITE, RESET = "invite", "reset"
GONE = "This link was used or has expired — ask your administrator for a new one"


def create(user: User, purpose: str) -> tuple[Invitation, str]:
    """A new invitation for ``user`` (in the session, not committed), and its
    secret; those made before it for the account stop working."""
    db.session.execute(
        update(Invitation)
        .where(Invitation.user_id == user.id, Invitation.used_at.is_(None))
        .values(used_at=utcnow())
    )
    secret = secrets.token_urlsafe(SECRET_BYTES)
    lifetime = current_app.config["INVITATION_SECONDS"]
    invitation = Invitation(
        token_hash=secret_hash(secret),
        user_id=user.id,
        purpose=purpose,
        created_at=utcnow(),
        expires_at=utcnow() + timedelta(seconds=lifetime),
    )
    db.session.add(invitation)
    return invitation, secret


def url_of(secret: str) -> str:
    """The link itself, absolute."""
    return url_for("admin.invitation_page", secret=secret, _external=True)


def open_invitation(secret: str) -> tuple[Invitation, User]:
    """The invitation ``secret`` opens, and its account: 404 for none, 410
    for one used, expired, or whose account is disabled."""
    found = None
    if SECRET_RE.fullmatch(secret):
        found = db.session.execute(
            db.select(Invitation, User)
            .join(User, User.id == Invitation.user_id)
            .where(Invitation.token_hash == secret_hash(secret))
        ).one_or_none()
    if found is None:
        raise ApiError(404, "No such invitation — ask your administrator for a link")
    invitation, user = found
    if (
        invitation.used_at is not None
        or invitation.expires_at <= utcnow()
        or user.disabled_at is not None
    ):
        raise ApiError(410, GONE)
    return invitation, user


def use(invitation: Invitation, user: User, password: str) -> None:
    """Set the account's password through the invitation and commit: once
    (410 if it was used meanwhile); every session and token of the account
    ends."""
    used = db.session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if rowcount(used) != 1:
        db.session.rollback()
        raise ApiError(410, GONE)
    user.password_hash = hash_password(password)
    revoke_all_tokens(user)
    db.session.commit()


# Wherever an invitation's URL appears in a log line.
logs.redact_secret(re.compile(r"(/invite/)[A-Za-z0-9_-]{8,}"))
