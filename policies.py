"""The server's policies: rules an administrator sets in the admin area, kept
in the database (``setting`` rows) and read where they apply, so that every
instance follows a change at once.

- ``links_need_password``: every share link must have a password; a link
  without one is refused when it is made and stops opening.
- ``max_link_seconds``: no link may live longer; a longer one is refused when
  it is made, and an older one stops opening once it passes the limit.
- ``share_links``: off, no link can be made and none opens.
- ``upload_requests``: off, no upload request can be made and none takes files.
- ``two_factor_required``: every account that signs in with a password must
  set up a second factor (as REQUIRE_TWO_FACTOR says for the whole server).
- ``default_quota_bytes``: the quota a new account starts with (None: the
  STORAGE_QUOTA_BYTES default applies to it).
"""

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from errors import ApiError
from models import Setting, User, db, retry_on_conflict, utcnow

PREFIX = "policy."
LINKS_NEED_PASSWORD = "This server requires a password on every link"
LINKS_OFF = "Share links are turned off on this server"
REQUESTS_OFF = "Upload requests are turned off on this server"


@dataclass(frozen=True)
class Policies:
    """The policies in force (their defaults until an administrator sets them)."""

    links_need_password: bool = False
    max_link_seconds: int | None = None
    share_links: bool = True
    upload_requests: bool = True
    two_factor_required: bool = False
    default_quota_bytes: int | None = None


NAMES = tuple(field.name for field in fields(Policies))


def current() -> Policies:
    """The policies as the database holds them now."""
    stored = {
        name.removeprefix(PREFIX): json.loads(value)
        for name, value in db.session.execute(
            db.select(Setting.name, Setting.value).where(
                Setting.name.startswith(PREFIX)
            )
        )
    }
    return Policies(**{name: stored[name] for name in NAMES if name in stored})


def as_dict(policies: Policies) -> dict:
    """The policies, as the API gives them."""
    return asdict(policies)


def change(values: dict) -> list[str]:
    """Store new values (checked by the caller's schema) and commit; the
    names of those that changed. Two administrators saving at once: the
    later one wins (a first save of a policy that loses the race to insert
    its row is made again, as an update)."""
    for _ in range(3):
        try:
            return _change(values)
        except IntegrityError:
            db.session.rollback()
    raise ApiError(409, "The policies were being saved by someone else: try again")


@retry_on_conflict
def _change(values: dict) -> list[str]:
    """change's transaction."""
    before = as_dict(current())
    changed = [
        name for name in NAMES if name in values and values[name] != before[name]
    ]
    now = utcnow()
    for name in changed:
        row = db.session.get(Setting, PREFIX + name)
        value = json.dumps(values[name])
        if row is None:
            db.session.add(Setting(name=PREFIX + name, value=value, updated_at=now))
        else:
            row.value, row.updated_at = value, now
    return changed


def check_new_link(has_password: bool, expires_at: datetime) -> None:
    """Refuse a new share link the policies forbid: 403 while links are off,
    400 for one without a password or one that lives too long."""
    policies = current()
    if not policies.share_links:
        raise ApiError(403, LINKS_OFF)
    if policies.links_need_password and not has_password:
        raise ApiError(400, LINKS_NEED_PASSWORD)
    limit = policies.max_link_seconds
    if limit is not None and expires_at > utcnow() + timedelta(seconds=limit + 60):
        raise ApiError(400, f"Links on this server may last at most {_days(limit)}")


def link_still_allowed(
    has_password: bool, created_at: datetime, policies: Policies | None = None
) -> str | None:
    """Why the policies (those in force, unless given) stop an existing link
    from opening, or None."""
    policies = policies or current()
    if not policies.share_links:
        return LINKS_OFF
    if policies.links_need_password and not has_password:
        return LINKS_NEED_PASSWORD
    limit = policies.max_link_seconds
    if limit is not None and created_at + timedelta(seconds=limit) <= utcnow():
        return f"Links on this server may last at most {_days(limit)}"
    return None


def check_requests_on() -> None:
    """Refuse anything about upload requests while they are off (403)."""
    if not current().upload_requests:
        raise ApiError(403, REQUESTS_OFF)


def two_factor_required(user: User) -> bool:
    """Whether the policy asks ``user`` (an account with a password) for a
    second factor."""
    return user.password_hash is not None and current().two_factor_required


def new_account(user: User) -> User:
    """A new account, with the quota the policy gives new accounts."""
    quota = current().default_quota_bytes
    if quota is not None and user.quota_bytes is None:
        user.quota_bytes = quota
    return user


def _days(seconds: int) -> str:
    """A lifetime in words."""
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    hours = max(1, seconds // 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"
