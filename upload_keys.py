"""The upload key credential: the random key in a resumable upload's URL,
``/uploads/<key>``. It is a capability for that one upload, like a presigned
URL: it alone resumes, inspects and terminates the upload, for as long as the
upload lives, so that an upload outlasts the 20-minute access token it began
with. Only the key's SHA-256 is stored. A token that comes along must be the
owner's (anyone else gets 404). Signing out everywhere or a new password ends
the key for whoever holds it alone (credentials.owner_still_trusts); the
owner, signed in again, may still resume it with the new token
(tests/test_resumable.py::test_signing_out_everywhere_ends_the_key).
"""

import re
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy.orm import contains_eager

import logs
import policies
from credentials import owner_still_trusts, secret_hash
from errors import ApiError
from models import ResumableUpload, StoredFile, UploadRequest, User, db, utcnow

# 192 random bits, URL-safe: 32 characters.
KEY_BYTES = 24
KEY_RE = re.compile(r"[A-Za-z0-9_-]{32}")
NOT_FOUND = "Upload not found"


def new_key() -> str:
    """A fresh upload key."""
    return secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """What is stored of an upload's key."""
    return secret_hash(key)


def new_upload(
    key: str,
    stored_file: StoredFile,
    owner: User,
    length: int | None,
    upload_metadata: str,
) -> ResumableUpload:
    """The upload ``key`` will open (not added to the session): the key's
    hash, and the owner's token version of now, which signing out everywhere
    replaces (owner_still_trusts); it expires UPLOAD_EXPIRY_SECONDS from now
    unless a piece brings bytes."""
    lifetime = current_app.config["UPLOAD_EXPIRY_SECONDS"]
    return ResumableUpload(
        key_hash=key_hash(key),
        stored_file=stored_file,
        length=length,
        upload_metadata=upload_metadata,
        owner_version=owner.token_version,
        expires_at=utcnow() + timedelta(seconds=lifetime),
    )


def open_upload(key: str, account: User | None) -> tuple[ResumableUpload, User]:
    """The upload ``key`` opens, and its owner; 404 for a key that opens
    nothing, or that its owner no longer trusts, or when ``account`` (a
    signed-in caller who came along with the key) is not the owner; 410 for an
    unfinished upload past its expiry."""
    found = None
    if KEY_RE.fullmatch(key):
        found = db.session.execute(
            db.select(ResumableUpload, User)
            .join(ResumableUpload.stored_file)
            .join(User, User.id == StoredFile.owner_id)
            .options(contains_eager(ResumableUpload.stored_file))
            .where(ResumableUpload.key_hash == key_hash(key))
        ).one_or_none()
    if found is None:
        raise ApiError(404, NOT_FOUND)
    upload, owner = found
    if account is not None and account.id != owner.id:
        raise ApiError(404, NOT_FOUND)
    if account is None and not owner_still_trusts(upload, owner):
        raise ApiError(404, NOT_FOUND)
    if not upload.stored_file.complete and upload.expires_at <= utcnow():
        raise ApiError(410, "Upload expired")
    if upload.stored_file.request_id is not None and not upload.stored_file.complete:
        _request_still_takes_files(upload.stored_file.request_id)
    return upload, owner


def _request_still_takes_files(request_id: int) -> None:
    """A guest's upload into an upload request goes on only while the
    request takes files: 403 while the policy turns upload requests off, 410
    once its owner (or an administrator) closed it."""
    policies.check_requests_on()
    closed_at = db.session.execute(
        db.select(UploadRequest.closed_at).where(UploadRequest.id == request_id)
    ).scalar_one_or_none()
    if closed_at is not None:
        raise ApiError(410, "This upload request was closed: it takes no more files")


# Wherever an upload's URL appears in a log line.
logs.redact_secret(re.compile(r"(/uploads/)[A-Za-z0-9_-]{8,}"))
