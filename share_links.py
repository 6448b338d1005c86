"""The share link credential: a random public id signed with the app's key
(itsdangerous, HMAC-SHA256), ``/s/<link>``. The database keeps only the
public id, so a copy of it opens nothing, and a changed character fails the
signature before any query; a tampered link and one that never existed get
the same 404. A link its owner revoked, or no longer trusts (signed out
everywhere, a new password: credentials.owner_still_trusts), or that has
expired, is 410; deleting the file, or its owner, deletes its links.

What a link's holder may bring besides the link (caller.py reads them all):
its password, checked against an scrypt hash (passwords.py), as Basic
credentials or the page's form; the cookie that says the page was unlocked
(signed, an hour, scoped to the link); and a download's claim (signed, good
for SHARE_RESUME_SECONDS), which ``DownloadCounter`` hands to the client that
took a count, so that it alone resumes without counting again.
"""

import re
import secrets
from collections.abc import Iterator
from datetime import timedelta

from flask import current_app, url_for
from itsdangerous import BadSignature, Signer, TimestampSigner

import audit
import logs
import notifications
import policies
from credentials import owner_still_trusts, signer, timestamp_signer
from errors import ApiError
from models import (
    Share,
    ShareDownload,
    ShareFile,
    StoredFile,
    User,
    db,
    retry_on_conflict,
    rowcount,
    utcnow,
)
from passwords import hash_password, password_matches

# 96 random bits of public id (16 characters) and a 43-character signature:
# "/s/" and 60 characters in all.
PUBLIC_ID_BYTES = 12
SIGNER_SALT = "lockbox.share"
UNLOCK_SALT = "lockbox.share.unlock"
UNLOCK_COOKIE = "lockbox_share"
UNLOCK_SECONDS = 3600
CLAIM_SALT = "lockbox.share.claim"
CLAIM_COOKIE = "lockbox_claim"
NOT_FOUND = "Link not found"
GONE = {
    "expired": "This link has expired",
    "revoked": "This link was revoked by its owner",
    "used_up": "This link has reached its download limit",
    "emptied": "The files of this link were deleted by their owner, or expired",
}
FILE_EXPIRED = "The file behind this link has expired"
# The owner's account is disabled: the link may work again once it is enabled.
OWNER_DISABLED = (
    "The account that shared this is disabled for now: ask the person who sent it"
)


def _signer() -> Signer:
    """Signs and checks link tokens, with SECRET_KEY or a fallback key."""
    return signer(SIGNER_SALT)


def _unlock_signer() -> TimestampSigner:
    """Signs and checks the cookie that says a link's password was given."""
    return timestamp_signer(UNLOCK_SALT)


def _claim_signer() -> TimestampSigner:
    """Signs and checks a download's claim."""
    return timestamp_signer(CLAIM_SALT)


def new_public_id() -> str:
    """A fresh public id for a link."""
    return secrets.token_urlsafe(PUBLIC_ID_BYTES)


def new_share(
    files: list[StoredFile],
    owner: User,
    expires_in: int,
    password: str | None = None,
    max_downloads: int | None = None,
    several: bool = False,
) -> Share:
    """A new link (not added to the session) to one file, or to ``files`` in
    their order when ``several``: a fresh public id, the password's hash, and
    the owner's token version of now, which signing out everywhere replaces
    (owner_still_trusts)."""
    now = utcnow()
    share = Share(
        public_id=new_public_id(),
        owner_id=owner.id,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in),
        password_hash=hash_password(password) if password else None,
        max_downloads=max_downloads,
        downloads=0,
        owner_version=owner.token_version,
    )
    if not several:
        (share.stored_file,) = files
    return share


def add_files(share: Share, files: list[StoredFile]) -> None:
    """List ``files`` in a link to several, once it has its id."""
    db.session.add_all(
        ShareFile(share_id=share.id, position=position, file_id=stored_file.id)
        for position, stored_file in enumerate(files, start=1)
    )


def files_of(share: Share) -> list[tuple[int, StoredFile]]:
    """A link's files with their positions: its one file at position 1, or
    the files of a link to several that are still there, in their order."""
    if share.file_id is not None:
        stored_file = db.session.get(StoredFile, share.file_id)
        if stored_file is None or stored_file.expired():
            return []
        return [(1, stored_file)]
    return [
        (position, stored_file)
        for position, stored_file in db.session.execute(
            db.select(ShareFile.position, StoredFile)
            .join(StoredFile, StoredFile.id == ShareFile.file_id)
            .where(ShareFile.share_id == share.id, StoredFile.kept(utcnow()))
            .order_by(ShareFile.position)
        )
    ]


def link_url(share: Share) -> str:
    """The link itself, absolute."""
    token = _signer().sign(share.public_id).decode("ascii")
    return url_for("shares.share_page", link=token, _external=True)


def status_of(share: Share, owner: User, files_left: int = 1) -> str:
    """active, expired, revoked, used_up, emptied (a link to several
    files whose every file was deleted), or disabled (its owner's account,
    for now)."""
    if owner.disabled_at is not None and share.revoked_at is None:
        return "disabled"
    if share.revoked_at is not None or not owner_still_trusts(share, owner):
        return "revoked"
    if share.expires_at <= utcnow():
        return "expired"
    if files_left == 0:
        return "emptied"
    if share.max_downloads is not None and share.downloads >= share.max_downloads:
        return "used_up"
    return "active"


def shown_status(
    share: Share,
    owner: User,
    files_left: int = 1,
    in_force: policies.Policies | None = None,
) -> str:
    """status_of, or "stopped" for an active link the server's policies
    (those in force, unless given) stop from opening."""
    status = status_of(share, owner, files_left)
    if status == "active" and policies.link_still_allowed(
        share.password_hash is not None, share.created_at, in_force
    ):
        return "stopped"
    return status


def public_id_of(link: str) -> str | None:
    """The public id a link token carries, if its signature is ours."""
    try:
        return _signer().unsign(link).decode("ascii")
    except (BadSignature, UnicodeDecodeError):
        return None


def open_link(link: str) -> tuple[Share, list[tuple[int, StoredFile]], User]:
    """The share a link opens, its files (files_of) and owner: 404 when there
    is no such link (or it was tampered with, the same answer), 410 when it
    has expired, was revoked or lost all its files. Whether it is used up is
    the caller's to say."""
    public_id = public_id_of(link)
    found = None
    if public_id is not None:
        found = db.session.execute(
            db.select(Share, User)
            .join(User, User.id == Share.owner_id)
            .where(Share.public_id == public_id)
        ).one_or_none()
    files = files_of(found[0]) if found is not None else []
    if found is None or (
        found[0].file_id is not None
        and not files
        and db.session.get(StoredFile, found[0].file_id) is None
    ):
        raise ApiError(404, NOT_FOUND)
    share, owner = found
    status = status_of(share, owner, len(files))
    if status == "disabled":
        raise ApiError(403, OWNER_DISABLED)
    if status == "emptied" and share.file_id is not None:
        raise ApiError(410, FILE_EXPIRED)
    if status in ("expired", "revoked", "emptied"):
        raise ApiError(410, GONE[status])
    refused = policies.link_still_allowed(
        share.password_hash is not None, share.created_at
    )
    if refused is not None:
        raise ApiError(403, refused)
    return share, files, owner


def revoke(share: Share) -> None:
    """End a link now, on every instance (its row says so; committed)."""
    ended = db.session.execute(
        db.update(Share)
        .where(Share.id == share.id, Share.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.session.commit()
    if rowcount(ended):
        audit.record("link.revoked", target_of(share))


def target_of(share: Share) -> str:
    """How the audit log names a link: never the link itself."""
    return f"link {share.id} of user {share.owner_id}"


def password_opens(share: Share, password: str) -> bool:
    """Whether ``password`` is the link's (an scrypt check)."""
    assert share.password_hash is not None  # asked only of a link with a password
    return password_matches(share.password_hash, password)


def unlock_cookie_value(share: Share) -> str:
    """What the unlock cookie of this link holds once its password was given."""
    return _unlock_signer().sign(share.public_id).decode("ascii")


def unlock_cookie_opens(share: Share, cookie: str) -> bool:
    """Whether an unlock cookie is this link's, signed within the hour."""
    try:
        value = _unlock_signer().unsign(cookie, max_age=UNLOCK_SECONDS)
    except BadSignature:
        return False
    return value.decode("ascii", "replace") == share.public_id


def claim_names(public_id: str, claim: str) -> bool:
    """Whether a download's claim is valid, within the resume window, and of
    this link."""
    if not claim:
        return False
    try:
        value = _claim_signer().unsign(
            claim, max_age=current_app.config["SHARE_RESUME_SECONDS"]
        )
    except BadSignature:
        return False
    return value.decode("ascii", "replace").partition(":")[0] == public_id


class DownloadCounter:
    """Takes a share's download count for the body ``file_response`` is
    about to send (never for HEAD or a 304), and keeps it: ``claim`` is then
    the signed claim its client resumes with. The owner's webhooks hear of
    it (``what`` was fetched) in the same transaction."""

    def __init__(self, share: Share, what: str) -> None:
        self.share_id, self.public_id, self.what = share.id, share.public_id, what
        self.claim: str | None = None

    def __call__(self, body: Iterator[bytes]) -> Iterator[bytes]:
        """The body, once the count is taken (a 410 when none is left)."""
        download = self._claim_in_transaction()
        value = f"{self.public_id}:{download.id}"
        self.claim = _claim_signer().sign(value).decode("ascii")
        return body

    @retry_on_conflict
    def _claim_in_transaction(self) -> ShareDownload:
        """Count one download, or answer 410 when none is left: one UPDATE
        whose condition the database checks under the row's lock (run again
        if, on a Galera cluster, a count through another node conflicted)."""
        now = utcnow()
        claimed = rowcount(
            db.session.execute(
                db.update(Share)
                .where(
                    Share.id == self.share_id,
                    Share.max_downloads.is_(None)
                    | (Share.downloads < Share.max_downloads),
                )
                .values(downloads=Share.downloads + 1, last_download_at=now)
            )
        )
        if claimed != 1:
            db.session.rollback()
            raise ApiError(410, GONE["used_up"])
        download = ShareDownload(share_id=self.share_id, started_at=now)
        db.session.add(download)
        db.session.flush()
        notifications.link_downloaded(self.share_id, self.what)
        return download


# Wherever a link, or a download's claim, appears in a log line.
logs.redact_secret(re.compile(r"(/s/)[A-Za-z0-9_.-]{8,}"))
logs.redact_secret(re.compile(r"((?:^|[?&\s])claim=)[^&\s\"']+"))
