"""The upload request credential: a link, ``/r/<link>``, that lets whoever
holds it send files into its owner's account without an account of their
own. Like a share link, it is a random public id signed with the app's key
(itsdangerous, HMAC-SHA256): a copy of the database opens nothing, and a
changed character fails the signature before any query (404, as for a link
that never existed). A request that is closed, expired, or that its owner no
longer trusts (signed out everywhere, a new password) is 410; so is one that
is full.

What it lets its holder do, and nothing else: create uploads into that one
request (caller.py resolves it), within its caps on files and bytes and the
owner's quota, all checked in the transaction that begins each file, after
the owner's row is claimed (quotas.claim), so that guests sending at the
same moment, through any instance, cannot overshoot them together. The
request's password, if it has one, comes as the page's form (then a signed
cookie scoped to the link, for an hour) or as Basic credentials.
"""

import re
import secrets
from datetime import timedelta

from flask import url_for
from itsdangerous import BadSignature
from sqlalchemy import bindparam, func

import audit
import logs
import notifications
import policies
import quotas
import storage
from credentials import owner_still_trusts, signer, timestamp_signer
from errors import ApiError
from models import ResumableUpload, StoredFile, UploadRequest, User, db, utcnow
from passwords import hash_password, password_matches

PUBLIC_ID_BYTES = 12
SIGNER_SALT = "lockbox.request"
UNLOCK_SALT = "lockbox.request.unlock"
UNLOCK_COOKIE = "lockbox_request"
UNLOCK_SECONDS = 3600
NOT_FOUND = "Upload request not found"
GONE = {
    "closed": "This upload request was closed by its owner",
    "expired": "This upload request has expired",
    "revoked": "This upload request was withdrawn by its owner",
    "full": "This upload request has all the files it can take",
}
OWNER_DISABLED = (
    "The account that asked for these files is disabled for now: ask the person "
    "who sent the link"
)


def new_request(
    owner: User,
    title: str,
    note: str,
    expires_in: int,
    max_bytes: int,
    password: str | None = None,
    max_files: int | None = None,
    allowed_types: str | None = None,
) -> UploadRequest:
    """A new upload request of ``owner`` (not added to the session);
    ``allowed_types`` as the schema checked it (".pdf, image/*"); a 403
    while the policy turns upload requests off."""
    policies.check_requests_on()
    now = utcnow()
    return UploadRequest(
        public_id=secrets.token_urlsafe(PUBLIC_ID_BYTES),
        owner_id=owner.id,
        title=title,
        note=note,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in),
        password_hash=hash_password(password) if password else None,
        max_files=max_files,
        max_bytes=max_bytes,
        allowed_types=", ".join(kinds_of(allowed_types)) or None,
        owner_version=owner.token_version,
    )


def kinds_of(allowed_types: str | None) -> list[str]:
    """The kinds of file a request takes, one each: endings in lower case,
    media types as written."""
    kinds = [kind.strip() for kind in (allowed_types or "").split(",")]
    return [kind.lower() if kind.startswith(".") else kind for kind in kinds if kind]


def takes(upload_request: UploadRequest, filename: str, media_type: str) -> bool:
    """Whether the request takes a file of this name and media type: its name
    ends with one of the endings, or its type is one of the types (``image/*``:
    any image)."""
    kinds = kinds_of(upload_request.allowed_types)
    if not kinds:
        return True
    name, media_type = filename.lower(), media_type.lower()
    for kind in kinds:
        if kind.startswith("."):
            if name.endswith(kind):
                return True
        elif kind.endswith("/*"):
            if media_type.startswith(kind[:-1]):
                return True
        elif media_type == kind:
            return True
    return False


def request_url(upload_request: UploadRequest) -> str:
    """The request's link, absolute."""
    token = signer(SIGNER_SALT).sign(upload_request.public_id).decode("ascii")
    return url_for("upload_requests.guest_page", link=token, _external=True)


# What a request holds so far: its finished files, and the unfinished ones
# still alive, each counted at what it holds (quotas.TAKEN).
RECEIVED = (
    db.select(func.count(StoredFile.id), func.coalesce(func.sum(quotas.TAKEN), 0))
    .select_from(StoredFile)
    .outerjoin(ResumableUpload, ResumableUpload.file_id == StoredFile.id)
    .where(
        StoredFile.request_id == bindparam("request_id"),
        StoredFile.reserved != quotas.ENDED,
        # An expired file leaves the request's count, as its bytes do.
        StoredFile.expires_at.is_(None) | (StoredFile.expires_at > bindparam("now")),
        StoredFile.complete.is_(True)
        | ResumableUpload.expires_at.is_(None)
        | (ResumableUpload.expires_at > bindparam("now")),
    )
)


def received(upload_request: UploadRequest, locked: bool = False) -> tuple[int, int]:
    """How many files the request holds, and how many bytes they take
    (``locked``: as a locking read, inside a file's beginning)."""
    statement = RECEIVED.with_for_update() if locked else RECEIVED
    files, taken = db.session.execute(
        statement, {"request_id": upload_request.id, "now": utcnow()}
    ).one()
    return int(files), int(taken)


def status_of(upload_request: UploadRequest, owner: User) -> str:
    """active, closed, revoked, expired, full, or disabled (its owner's
    account, for now)."""
    if upload_request.closed_at is not None:
        return "closed"
    if owner.disabled_at is not None:
        return "disabled"
    if not owner_still_trusts(upload_request, owner):
        return "revoked"
    if upload_request.expires_at <= utcnow():
        return "expired"
    files, taken = received(upload_request)
    cap = upload_request.max_files
    if (cap is not None and files >= cap) or taken >= upload_request.max_bytes:
        return "full"
    return "active"


def shown_status(
    upload_request: UploadRequest,
    owner: User,
    in_force: policies.Policies | None = None,
) -> str:
    """status_of, or "stopped" for an active request while the server's
    policies turn upload requests off."""
    status = status_of(upload_request, owner)
    if status == "active" and not (in_force or policies.current()).upload_requests:
        return "stopped"
    return status


def open_request(link: str) -> tuple[UploadRequest, User]:
    """The request a link opens, and its owner: 404 for no such link (or a
    tampered one), 410 for one that takes nothing more."""
    try:
        public_id = signer(SIGNER_SALT).unsign(link).decode("ascii")
    except (BadSignature, UnicodeDecodeError):
        public_id = None
    found = None
    if public_id is not None:
        found = db.session.execute(
            db.select(UploadRequest, User)
            .join(User, User.id == UploadRequest.owner_id)
            .where(UploadRequest.public_id == public_id)
        ).one_or_none()
    if found is None:
        raise ApiError(404, NOT_FOUND)
    upload_request, owner = found
    policies.check_requests_on()
    status = status_of(upload_request, owner)
    if status == "disabled":
        raise ApiError(403, OWNER_DISABLED)
    if status != "active":
        raise ApiError(410, GONE[status])
    return upload_request, owner


def password_opens(upload_request: UploadRequest, password: str) -> bool:
    """Whether ``password`` is the request's (an scrypt check)."""
    assert upload_request.password_hash is not None
    return password_matches(upload_request.password_hash, password)


def unlock_cookie_value(upload_request: UploadRequest) -> str:
    """What the unlock cookie holds once the request's password was given."""
    return timestamp_signer(UNLOCK_SALT).sign(upload_request.public_id).decode()


def unlock_cookie_opens(upload_request: UploadRequest, cookie: str) -> bool:
    """Whether an unlock cookie is this request's, signed within the hour."""
    try:
        value = timestamp_signer(UNLOCK_SALT).unsign(cookie, max_age=UNLOCK_SECONDS)
    except BadSignature:
        return False
    return value.decode("ascii", "replace") == upload_request.public_id


PASSWORD_NEEDED = "This upload request needs its password"
WRONG_PASSWORD = "Wrong password"
PASSWORD_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Lockbox upload request"'}


def password_needed(wrong: bool) -> ApiError:
    """The 401 of a request whose password did not come, or was wrong."""
    return ApiError(
        401, WRONG_PASSWORD if wrong else PASSWORD_NEEDED, PASSWORD_CHALLENGE
    )


def begin_file(
    upload_request: UploadRequest,
    filename: str,
    declared_type: str | None,
    length: int,
) -> StoredFile:
    """A new hidden file of ``length`` bytes in the owner's account, sent
    through the request (not committed): the owner's row claimed first, then
    the owner's quota and the request's caps checked with locking reads.
    413 when it does not fit, 410 when the request takes no more files."""
    media_type = storage.content_type_for(declared_type, filename)
    if not takes(upload_request, storage.clean_filename(filename), media_type):
        kinds = upload_request.allowed_types
        raise ApiError(415, f"This request takes only these kinds of file: {kinds}")
    quotas.claim(upload_request.owner_id)
    stored_file = storage.begin(
        upload_request.owner_id,
        filename,
        declared_type,
        reserve=length,
        commit=False,
    )
    stored_file.request_id = upload_request.id
    db.session.flush()
    files, taken = received(upload_request, locked=True)
    if upload_request.max_files is not None and files > upload_request.max_files:
        raise ApiError(410, GONE["full"])
    if taken > upload_request.max_bytes:
        left = upload_request.max_bytes - (taken - length)
        raise quotas.NoRoom(
            413, f"This request takes {max(left, 0)} more bytes; the file has {length}"
        )
    return stored_file


# Wherever a request's link appears in a log line.
logs.redact_secret(re.compile(r"(/r/)[A-Za-z0-9_.-]{8,}"))


def close(upload_request: UploadRequest) -> None:
    """Close a request, once, telling its owner's webhooks (committed)."""
    if upload_request.closed_at is None:
        upload_request.closed_at = utcnow()
        notifications.request_closed(upload_request)
        db.session.commit()
        audit.record("request.closed", target_of(upload_request))


def target_of(upload_request: UploadRequest) -> str:
    """How the audit log names an upload request: never its link."""
    return f"request {upload_request.id} of user {upload_request.owner_id}"
