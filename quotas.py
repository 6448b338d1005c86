"""Storage quotas: what an account keeps, and what it may keep.

An account's usage is the size of its finished files plus, for every file
still arriving, the larger of what it has stored and what it holds
(``reserved``): the length a resumable upload announced, a form upload's
Content-Length or, for a file whose length is not known beforehand, what it
has stored and a little more, held as it grows (``SizeLimit``). An unfinished
resumable upload past its expiry holds nothing: it can never finish; nor
does a file refused for room, from the moment it is refused.

Every change to what an account holds (a file beginning, a deferred upload's
length fixed, a file of unknown length growing past what it holds) is one
transaction that first writes the owner's row (``claim``), then adds up the
account's usage with a locking read and refuses what does not fit. Writing
the row is what orders them: on one server its row lock makes a second such
transaction wait for the first's commit; on a Galera cluster, where row locks
stay on their node, certification lets only one of two concurrent ones
through different nodes commit, and the other's retry sees the first. So the
quota holds for uploads begun or growing at the same moment, however they
come in.
"""

from flask import current_app
from sqlalchemy import bindparam, case, func

from errors import ApiError
from formats import human_size
from models import ResumableUpload, StoredFile, User, db, retry_on_conflict, utcnow

# ``reserved`` of a file refused for room: it can never finish and holds
# nothing from the refusal on, while its request removes its chunks. Were its
# stored bytes still counted until then, uploads growing together near the
# quota could each be refused for the others' bytes, and none would finish.
ENDED = -1
# What an account's files take, finished or on their way.
TAKEN = case(
    # An expired file stops counting at its expiry, before `files gc`
    # removes its bytes.
    (StoredFile.expires_at <= bindparam("now"), 0),
    (StoredFile.complete.is_(True), StoredFile.size),
    (ResumableUpload.expires_at <= bindparam("now"), 0),
    (StoredFile.reserved == ENDED, 0),
    (StoredFile.size > StoredFile.reserved, StoredFile.size),
    else_=StoredFile.reserved,
)
USAGE = (
    db.select(func.coalesce(func.sum(TAKEN), 0))
    .select_from(StoredFile)
    .outerjoin(ResumableUpload, ResumableUpload.file_id == StoredFile.id)
    .where(
        StoredFile.owner_id == bindparam("owner_id"),
        StoredFile.id != bindparam("except_id"),
    )
)
# The same sum as a locking read: it sees every commit before it, whatever the
# transaction read before (on SQLite the write lock already does).
LOCKED_USAGE = USAGE.with_for_update()
CLAIM = (
    db.update(User)
    .where(User.id == bindparam("owner_id"))
    .values(reservations=User.reservations + 1)
    .execution_options(synchronize_session=False)
)
# How far past its stored bytes a file of unknown length holds room: a few
# chunks, so that it asks every few chunks rather than for each one; and never
# more than a share of the room left, so that two such uploads near the quota
# do not refuse each other early.
HOLD_AHEAD_CHUNKS = 8
HOLD_AHEAD_SHARE = 8


def quota_of(user: User) -> int | None:
    """The bytes ``user`` may keep, or None for no limit."""
    quota = user.quota_bytes
    if quota is None:
        quota = current_app.config["STORAGE_QUOTA_BYTES"]
    return quota or None


def usage_of(user_id: int, except_file_id: int = 0, locked: bool = False) -> int:
    """The bytes the account's files take (leaving one file out, if named);
    ``locked``: as a locking read, inside a claim."""
    return db.session.execute(
        LOCKED_USAGE if locked else USAGE,
        {"owner_id": user_id, "except_id": except_file_id, "now": utcnow()},
    ).scalar_one()


def claim(owner_id: int) -> None:
    """Write the owner's row: the first step of every transaction that changes
    what the account holds (see the module's docstring). Nothing pending in
    the session is flushed before it, so the owner's row is always the first
    row such a transaction locks."""
    with db.session.no_autoflush:
        db.session.execute(CLAIM, {"owner_id": owner_id})


class NoRoom(ApiError):
    """A 413 for a file that cannot grow that far: past its owner's quota or
    MAX_FILE_SIZE. An upload refused so can never finish."""


def over_quota(used: int, quota: int) -> NoRoom:
    """The 413 of an account that has no room left, saying used and limit as
    people read them, and in bytes for scripts."""
    said = f"{human_size(used)} of {human_size(quota)} used"
    return NoRoom(413, f"Storage quota exceeded: {said} ({used} of {quota} bytes)")


def too_large() -> NoRoom:
    """The 413 of a file over MAX_FILE_SIZE."""
    limit = current_app.config["MAX_FILE_SIZE"]
    return NoRoom(
        413, f"File too large: the limit is {human_size(limit)} ({limit} bytes)"
    )


def reserve(stored_file: StoredFile, length: int) -> None:
    """Hold ``length`` bytes of the owner's quota for an unfinished file, or
    raise NoRoom (the caller rolls back). Runs in the caller's transaction,
    which it ends holding the owner's row until the commit."""
    if length > current_app.config["MAX_FILE_SIZE"]:
        raise too_large()
    stored_file.reserved = length
    quota = quota_of(db.session.get_one(User, stored_file.owner_id))
    if quota is None:
        return
    claim(stored_file.owner_id)
    db.session.flush()
    used = usage_of(stored_file.owner_id, locked=True)
    if used > quota:
        raise over_quota(used - max(length, stored_file.size), quota)


class SizeLimit:
    """How large a file that is still arriving may grow: MAX_FILE_SIZE (or the
    caller's smaller ``cap``, refused with ``cap_error``), and its owner's
    quota, held for it as it grows."""

    def __init__(
        self,
        stored_file: StoredFile,
        cap: int | None = None,
        cap_error: ApiError | None = None,
    ) -> None:
        self.file_id, self.owner_id = stored_file.id, stored_file.owner_id
        self.chunk_size = stored_file.chunk_size
        self.max_size = current_app.config["MAX_FILE_SIZE"]
        self.error: ApiError = too_large()
        if cap is not None and cap_error is not None and cap <= self.max_size:
            self.max_size, self.error = cap, cap_error
        self.quota = quota_of(db.session.get_one(User, stored_file.owner_id))
        # What the account already counts for the file.
        self.held = max(stored_file.size, stored_file.reserved)

    def admit(self, size: int) -> None:
        """Let the file grow to ``size`` bytes, holding more of the quota when
        it grows past what it holds (a short transaction of its own); else
        raise ``error`` or NoRoom."""
        if size > self.max_size:
            raise self.error
        if self.quota is not None and size > self.held:
            self.held = self._hold(size)

    def _hold(self, size: int) -> int:
        """Hold room for ``size`` bytes and a little more (committed); what the
        file holds now. When it does not fit, the file ends: from that commit
        on it holds nothing (``ENDED``), and NoRoom is raised."""
        quota = self.quota
        assert quota is not None  # asked only of a file whose owner has a quota
        set_reserved = db.update(StoredFile).where(StoredFile.id == self.file_id)

        @retry_on_conflict
        def hold() -> tuple[int, int]:
            claim(self.owner_id)
            others = usage_of(self.owner_id, self.file_id, locked=True)
            room = min(quota - others, self.max_size)
            if size > room:
                db.session.execute(set_reserved.values(reserved=ENDED))
                return 0, others
            ahead = min(
                HOLD_AHEAD_CHUNKS * self.chunk_size, (room - size) // HOLD_AHEAD_SHARE
            )
            db.session.execute(set_reserved.values(reserved=size + ahead))
            return size + ahead, others

        held, others = hold()
        if not held:
            raise over_quota(others, quota)
        return held


def account_usage(user: User) -> dict:
    """The account's usage and limits, as ``GET /account`` and the page show them."""
    return {
        "username": user.username,
        "used_bytes": usage_of(user.id),
        "quota_bytes": quota_of(user),
        "max_file_size": current_app.config["MAX_FILE_SIZE"],
    }


def usage_by_account() -> dict[int, int]:
    """What each account's files take, in one query (the admin area's list);
    an account with no file is not in it."""
    rows = db.session.execute(
        db.select(StoredFile.owner_id, func.coalesce(func.sum(TAKEN), 0))
        .select_from(StoredFile)
        .outerjoin(ResumableUpload, ResumableUpload.file_id == StoredFile.id)
        .group_by(StoredFile.owner_id),
        {"now": utcnow()},
    )
    return {owner_id: int(used) for owner_id, used in rows}
