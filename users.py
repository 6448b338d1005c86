"""Managing accounts, for the admin area (admin.py) and the command line
(cli.py) alike: make one (with an invitation to set its password), disable
and enable it, delete it, change its role or quota, sign it out everywhere.
Each change is committed and written to the audit log.

The server never goes without an administrator: the last enabled one can't
be demoted, disabled or deleted (409).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from flask import current_app, render_template
from sqlalchemy.exc import IntegrityError, InvalidRequestError

import audit
import invitations
import mail
import policies
from errors import ApiError
from models import (
    ADMIN,
    ROLES,
    AccessToken,
    Setting,
    StoredFile,
    User,
    change_account,
    db,
    utcnow,
)
from passwords import canonical_username, hash_password
from session_tokens import revoke_all_tokens
from storage import delete_stored_files

R = TypeVar("R")
BAD_NAME = (
    "A username is 1-80 characters: letters, digits and _ . @ + - "
    "(not starting with punctuation)"
)
LAST_ADMIN = "This is the last administrator: make another one first"
# The row every change that could take an administrator away writes first.
ADMINS_GUARD = "guard.admins"


@dataclass(frozen=True)
class Invited:
    """An invitation made: its link (shown once), until when it works, and
    whether it was sent to the account's e-mail address."""

    url: str
    expires_at: datetime
    emailed: bool
    # Why it could not be sent, when an address was there to send it to.
    mail_error: str | None = None


# The largest quota a BIGINT column keeps.
MAX_QUOTA = 2**63 - 1
QUOTA_TOO_LARGE = f"quota: at most {MAX_QUOTA} bytes"


def check_quota(quota_bytes: int | None) -> int | None:
    """A quota that fits its column, or a 400."""
    if quota_bytes is not None and not 0 <= quota_bytes <= MAX_QUOTA:
        raise ApiError(400, QUOTA_TOO_LARGE)
    return quota_bytes


def find(user_id: int) -> User:
    """The account with this id, or a 404."""
    user = db.session.get(User, user_id)
    if user is None:
        raise ApiError(404, "No such user")
    return user


def create(
    username: str,
    role: str = "user",
    email: str | None = None,
    quota_bytes: int | None = None,
    password: str | None = None,
) -> User:
    """A new account (committed): without a password until its invitation is
    used, unless one is given; 400 for a bad name, 409 for a taken one."""
    if canonical_username(username) != username:
        raise ApiError(400, BAD_NAME)
    check_quota(quota_bytes)
    assert role in ROLES
    taken = db.session.execute(
        db.select(User.id).where(db.func.lower(User.username) == username.lower())
    ).first()
    if taken:
        raise ApiError(409, f"A user named {username} already exists")
    user = policies.new_account(
        User(
            username=username,
            role=role,
            email=email or None,
            quota_bytes=quota_bytes,
            password_hash=hash_password(password) if password else None,
        )
    )
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # the same name, made a moment ago
        db.session.rollback()
        raise ApiError(409, f"A user named {username} already exists") from None
    audit.record("user.created", audit.target_user(user), f"role {role}")
    return user


def invite(user: User, purpose: str = invitations.INVITE) -> Invited:
    """A new invitation (or password reset) link for ``user`` (committed),
    sent to their e-mail address when the server sends e-mail."""
    if user.disabled_at is not None:
        raise ApiError(409, "The account is disabled: enable it first")
    invitation, secret = invitations.create(user, purpose)
    db.session.commit()
    audit.record("invitation.created", audit.target_user(user), purpose)
    url = invitations.url_of(secret)
    config = current_app.config
    if not (config["SMTP_URL"] and user.email):
        return Invited(url, invitation.expires_at, False)
    context = {
        "user": user,
        "url": url,
        "expires_at": invitation.expires_at,
        "reset": purpose == invitations.RESET,
    }
    subject = (
        "Set a new password for Lockbox"
        if purpose == invitations.RESET
        else "You are invited to Lockbox"
    )
    try:
        mail.send(
            config["SMTP_URL"],
            config["MAIL_FROM"],
            user.email,
            subject,
            render_template("email/invitation.txt", **context),
            render_template("email/invitation.html", **context),
            timeout=config["WEBHOOK_TIMEOUT_SECONDS"],
        )
    except Exception as failure:  # a refusal or a network failure: show the link
        current_app.logger.warning("The invitation e-mail was not sent: %s", failure)
        return Invited(url, invitation.expires_at, False, type(failure).__name__)
    return Invited(url, invitation.expires_at, True)


def _change(user: User, work: Callable[[User], R]) -> R:
    """``work`` on the account read afresh, committed (models.change_account);
    a 404 when it was deleted meanwhile."""
    try:
        return change_account(user, work)
    except InvalidRequestError:  # the row is gone: nothing to refresh
        db.session.rollback()
        raise ApiError(404, "No such user") from None


def _other_admins(user: User) -> int:
    """How many enabled administrators there are besides ``user``: a locking
    read, which sees what was committed since the transaction began (a plain
    read on MariaDB would see its snapshot, from before the guard row's lock
    was granted)."""
    return len(
        db.session.execute(
            db.select(User.id)
            .where(User.role == ADMIN, User.disabled_at.is_(None), User.id != user.id)
            .with_for_update()
        ).all()
    )


def _keep_an_admin(user: User) -> None:
    """Refuse to take away the last enabled administrator (409).

    Two administrators taking each other away at once must not both pass:
    each change first writes one guard row (a row lock on one server, a
    certification conflict through two Galera nodes), then counts the others
    with a locking read, which sees the change that held the lock before."""
    if user.role != ADMIN or user.disabled_at is not None:
        return
    guard = db.session.get(Setting, ADMINS_GUARD)
    if guard is None:
        db.session.add(Setting(name=ADMINS_GUARD, value="0", updated_at=utcnow()))
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            raise ApiError(
                409, "Another change to the administrators came at once: try again"
            ) from None
    else:
        guard.value = str(int(guard.value) + 1)
        guard.updated_at = utcnow()
        db.session.flush()
    if not _other_admins(user):
        raise ApiError(409, LAST_ADMIN)


def set_disabled(user: User, disabled: bool) -> User:
    """Disable the account (nothing of it opens, on any instance, until it is
    enabled again) or enable it."""

    def change(fresh: User) -> bool:
        if disabled == (fresh.disabled_at is not None):
            return False
        if disabled:
            _keep_an_admin(fresh)
        fresh.disabled_at = utcnow() if disabled else None
        return True

    if not _change(user, change):
        return user
    audit.record(
        "user.disabled" if disabled else "user.enabled", audit.target_user(user)
    )
    return user


def set_role(user: User, role: str, actor: User | None = None) -> User:
    """Make the account an administrator, or not (its `admin` tokens stop);
    ``actor``: who did it, if not the request's caller (the identity
    provider's claims, at the person's own sign-in)."""
    assert role in ROLES

    def change(fresh: User) -> bool:
        if role == fresh.role:
            return False
        if role != ADMIN:
            _keep_an_admin(fresh)
            # Its admin tokens end for good: made an admin again, the
            # account makes new ones.
            db.session.execute(
                db.delete(AccessToken).where(
                    AccessToken.user_id == fresh.id,
                    AccessToken.scopes.contains(ADMIN),
                )
            )
        fresh.role = role
        return True

    if not _change(user, change):
        return user
    audit.record("user.role", audit.target_user(user), role, actor)
    return user


def set_quota(user: User, quota_bytes: int | None) -> User:
    """Set what the account may keep: bytes, 0 for no limit, None for the
    server's default."""
    check_quota(quota_bytes)

    def change(fresh: User) -> bool:
        if fresh.quota_bytes == quota_bytes:
            return False
        fresh.quota_bytes = quota_bytes
        return True

    if not _change(user, change):
        return user
    audit.record(
        "user.quota",
        audit.target_user(user),
        "default" if quota_bytes is None else f"{quota_bytes} bytes",
    )
    return user


def set_password(user: User, password: str) -> User:
    """Give the account a new password: every session and token ends."""
    password_hash = hash_password(password)

    def change(fresh: User) -> None:
        fresh.password_hash = password_hash
        revoke_all_tokens(fresh)

    _change(user, change)
    audit.record("password.changed", audit.target_user(user))
    return user


def sign_out_everywhere(user: User) -> User:
    """End every session, token, link and upload key of the account."""
    _change(user, revoke_all_tokens)
    audit.record("sign_out.everywhere", audit.target_user(user))
    return user


def delete(user: User) -> None:
    """Delete the account and everything it owns."""
    target = audit.target_user(user)

    def step_down(fresh: User) -> None:
        # First no longer an administrator, in a transaction of its own: the
        # files may take several to delete.
        _keep_an_admin(fresh)
        fresh.role = "user"

    _change(user, step_down)
    delete_stored_files(StoredFile.owner_id == user.id)
    db.session.delete(user)
    db.session.commit()
    audit.record("user.deleted", target)
