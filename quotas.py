"""Storage quotas: what an account keeps, what it may keep, and ``GET /account``.

An account's usage is the size of its finished files plus, for every file
still arriving, the larger of what it has stored and what it reserved (the
length a resumable upload announced, or a form upload's Content-Length).
Reserving happens when a file begins, in the same transaction that checks
the quota, under a lock on the owner's row: two uploads started together
cannot both take the last free bytes. A file whose length is not known
beforehand is limited while it streams instead (``SizeLimit``).
"""

from flask import Blueprint, current_app, g, jsonify
from sqlalchemy import bindparam, case, func

from authentication import check_for_token
from errors import ApiError
from models import StoredFile, User, db
from schemas import account_schema

bp = Blueprint("quotas", __name__)

# What an account's files take, finished or on their way.
TAKEN = case(
    (StoredFile.complete.is_(True), StoredFile.size),
    (StoredFile.size > StoredFile.reserved, StoredFile.size),
    else_=StoredFile.reserved,
)
USAGE = db.select(func.coalesce(func.sum(TAKEN), 0)).where(
    StoredFile.owner_id == bindparam("owner_id"),
    StoredFile.id != bindparam("except_id"),
)


def quota_of(user: User) -> int | None:
    """The bytes ``user`` may keep, or None for no limit."""
    quota = user.quota_bytes
    if quota is None:
        quota = current_app.config["STORAGE_QUOTA_BYTES"]
    return quota or None


def usage_of(user_id: int, except_file_id: int = 0) -> int:
    """The bytes the account's files take (leaving one file out, if named)."""
    return db.session.execute(
        USAGE, {"owner_id": user_id, "except_id": except_file_id}
    ).scalar_one()


def over_quota(used: int, quota: int) -> ApiError:
    """The 413 of an account that has no room left, saying used and limit."""
    return ApiError(413, f"Storage quota exceeded: {used} of {quota} bytes used")


def too_large() -> ApiError:
    """The 413 of a file over MAX_FILE_SIZE."""
    limit = current_app.config["MAX_FILE_SIZE"]
    return ApiError(413, f"File too large: the limit is {limit} bytes")


def reserve(stored_file: StoredFile, length: int) -> None:
    """Hold ``length`` bytes of the owner's quota for an unfinished file, or
    raise a 413 (the caller rolls back). Runs in the caller's transaction,
    which it ends holding a lock on the owner's row until the commit."""
    if length > current_app.config["MAX_FILE_SIZE"]:
        raise too_large()
    stored_file.reserved = length
    owner = db.session.get(User, stored_file.owner_id)
    quota = quota_of(owner)
    if quota is None:
        return
    # The file's row is written first (flush), then the owner's row locked,
    # then the sum taken: on SQLite the write holds the database's one write
    # lock, on MariaDB the row lock makes a rival reservation wait for this
    # transaction's end, and then count this file.
    db.session.flush()
    db.session.execute(db.select(User.id).filter_by(id=owner.id).with_for_update())
    used = usage_of(owner.id)
    if used > quota:
        raise over_quota(used - max(length, stored_file.size), quota)


class SizeLimit:
    """How large a file that is still arriving may grow, and the error past it."""

    def __init__(self, stored_file: StoredFile):
        """The smaller of MAX_FILE_SIZE and the room the owner's quota leaves."""
        self.max_size = current_app.config["MAX_FILE_SIZE"]
        self.error = too_large()
        quota = quota_of(db.session.get(User, stored_file.owner_id))
        if quota is not None:
            others = usage_of(stored_file.owner_id, stored_file.id)
            if quota - others < self.max_size:
                self.max_size = max(quota - others, 0)
                self.error = over_quota(others, quota)


@bp.get("/account")
@check_for_token(scope="files:read")
def account():
    """The caller's name, storage used, quota and the largest file allowed.
    ---
    get:
      responses:
        200:
          description: Usage and limits
          content:
            application/json:
              schema: AccountSchema
    """
    return jsonify(account_schema.dump(account_usage(g.user)))


def account_usage(user: User) -> dict:
    """The account's usage and limits, as ``GET /account`` and the page show them."""
    return {
        "username": user.username,
        "used_bytes": usage_of(user.id),
        "quota_bytes": quota_of(user),
        "max_file_size": current_app.config["MAX_FILE_SIZE"],
    }
