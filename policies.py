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
- ``max_file_seconds``: the longest a file may be kept from its upload; an
  upload or an expiry that asks for longer (or for never) is refused, and a
  file whose owner asked nothing gets this lifetime. Files already kept keep
  the expiry they have: a policy never deletes what was kept under another.

A file's lifetime comes from ``file_expiry``: what its upload asked for
(``expires_in``), else its owner's default (``User.file_lifetime_seconds``),
never past ``max_file_seconds``.
"""

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from config import DAY, parse_duration
from errors import ApiError
from models import Setting, User, db, retry_on_conflict, utcnow

PREFIX = "policy."
LINKS_NEED_PASSWORD = "This server requires a password on every link"
LINKS_OFF = "Share links are turned off on this server"
REQUESTS_OFF = "Upload requests are turned off on this server"
# A file's lifetime: what "expires_in" may say, from a minute to ten years.
NEVER = "never"
MIN_FILE_SECONDS = 60
MAX_FILE_SECONDS = 3650 * DAY
LIFETIME_FORMAT = (
    "expires_in must be a lifetime such as 3600, 12h or 7d (1 minute to 3650 "
    'days), or "never"'
)


@dataclass(frozen=True)
class Policies:
    """The policies in force (their defaults until an administrator sets them)."""

    links_need_password: bool = False
    max_link_seconds: int | None = None
    share_links: bool = True
    upload_requests: bool = True
    two_factor_required: bool = False
    default_quota_bytes: int | None = None
    max_file_seconds: int | None = None


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


def lifetime_seconds(text: str) -> int | None:
    """A lifetime as an upload or a setting says it (seconds, a duration such
    as 12h or 7d, or "never": None); a 400 for anything else."""
    if text.strip().lower() == NEVER:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ApiError(400, LIFETIME_FORMAT) from None
    if not MIN_FILE_SECONDS <= seconds <= MAX_FILE_SECONDS:
        raise ApiError(400, LIFETIME_FORMAT)
    return seconds


def _too_long(limit: int) -> ApiError:
    return ApiError(400, f"Files on this server may be kept at most {_days(limit)}")


# The lifetimes the pages offer (the API takes any from a minute to ten years).
OFFERED_LIFETIMES = (
    ("1h", "1 hour"),
    ("1d", "1 day"),
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("365d", "1 year"),
    (NEVER, "Until deleted"),
)


def offered_lifetimes() -> list[tuple[str, str]]:
    """The lifetimes a page offers, as (value, words): those the policy allows."""
    limit = current().max_file_seconds
    return [
        (value, words)
        for value, words in OFFERED_LIFETIMES
        if limit is None or (value != NEVER and parse_duration(value) <= limit)
    ]


def default_lifetime(owner: User) -> int | None:
    """The lifetime of ``owner``'s new files when an upload asks nothing: the
    account's default, kept within the policy (None: until deleted)."""
    seconds = owner.file_lifetime_seconds
    limit = current().max_file_seconds
    if limit is not None:
        # A default set before the policy is kept within it.
        seconds = limit if seconds is None else min(seconds, limit)
    return seconds


def file_expiry(
    owner: User, asked: str | None, now: datetime | None = None
) -> datetime | None:
    """When a new file of ``owner``'s expires (None: never): in the lifetime
    its upload asked for, else in the account's default, never past the
    policy's maximum; a 400 when it asks for longer than that."""
    now = now or utcnow()
    if asked is None or not asked.strip():
        seconds = default_lifetime(owner)
    else:
        seconds = lifetime_seconds(asked)
        check_default_lifetime(seconds)
    return None if seconds is None else now + timedelta(seconds=seconds)


def check_default_lifetime(seconds: int | None) -> None:
    """Refuse a lifetime (an upload's, an account default) the policy would
    not give a file (400)."""
    limit = current().max_file_seconds
    if limit is not None and (seconds is None or seconds > limit):
        raise _too_long(limit)


def check_file_expiry(created_at: datetime, expires_at: datetime | None) -> None:
    """Refuse a new expiry for a file that the policy forbids (400): never,
    or later than its upload plus the longest lifetime."""
    limit = current().max_file_seconds
    if limit is None:
        return
    if expires_at is None or expires_at > created_at + timedelta(seconds=limit + 60):
        raise _too_long(limit)


def lifetime_words(seconds: int | None) -> str:
    """How long a file is kept, in words: "for 7 days", "until deleted"."""
    return "until deleted" if seconds is None else f"for {_days(seconds)}"


def _days(seconds: int) -> str:
    """A lifetime in words."""
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds < 3600:
        minutes = max(1, seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = seconds // 3600
    return f"{hours} hour{'s' if hours != 1 else ''}"
