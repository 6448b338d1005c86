"""Resumable uploads: the tus 1.0.0 protocol on ``/uploads``, into chunk rows.

Any tus client (tus-js-client, Uppy, tuspy, tusd's own) creates an upload with
``POST /uploads`` and sends its bytes in as many ``PATCH`` requests as it
likes, resuming after a broken connection from the offset ``HEAD`` gives.
The bytes go through storage.py like every other upload's: an unfinished,
hidden file that becomes an ordinary one once the last byte is in.

Extensions: creation, creation-with-upload, creation-defer-length,
termination, checksum (sha1, sha256) and expiration.

Who may touch an upload: creating one takes an account token. The URL it
answers with, ``/uploads/<key>``, carries a random key that is a capability
for that one upload (upload_keys.py): with it, the upload can be resumed,
inspected and terminated without a token, for as long as the upload lives.
An unfinished upload expires UPLOAD_EXPIRY_SECONDS after the last piece that
brought bytes (410, then 404 once ``files gc`` has removed it).
"""

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from flask import Blueprint, Response, current_app, g, request, url_for
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import http_date, parse_options_header

import access_log
import caller
import policies
import quotas
import rate_limits
import request_links
import storage
import upload_keys
from authentication import check_for_token
from errors import ApiError, no_content
from models import ResumableUpload, StoredFile, User, db, retry_on_conflict, utcnow
from schemas import DESCRIPTION_MAX

bp = Blueprint("uploads", __name__)

# Password attempts on an upload request's link, per link and per address.
limit_request_passwords = rate_limits.link_passwords(
    caller.request_link_key, caller.request_checks_no_password
)

TUS_VERSION = "1.0.0"
EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,"
    "termination,checksum,expiration"
)
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
OFFSET_STREAM = "application/offset+octet-stream"
# Says which file a finished upload became (on the last PATCH, and on HEAD).
FILE_ID_HEADER = "Lockbox-File-Id"
DIGITS_RE = re.compile(r"[0-9]{1,19}")
MAX_METADATA = 4096
READ_SIZE = 1024 * 1024


class Hash(Protocol):
    """What a piece's checksum needs of a hashlib hash."""

    def update(self, data: bytes | memoryview, /) -> None:
        """Hash more bytes."""

    def digest(self) -> bytes:
        """The digest of the bytes so far."""


# An Upload-Checksum: the hash's constructor, and the digest the piece must have.
Checksum = tuple[Callable[[], Hash], bytes]


@bp.before_request
def require_tus_version() -> None:
    """Every request but OPTIONS says which protocol version it speaks."""
    if request.method == "OPTIONS":
        return
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise ApiError(
            412,
            f"Tus-Resumable: {TUS_VERSION} is required",
            {"Tus-Version": TUS_VERSION},
        )


@bp.after_app_request
def tus_resumable(response: Response) -> Response:
    """Every answer on /uploads but OPTIONS says the protocol version (a 405,
    which no view of the blueprint answers, included)."""
    tus_path = request.path == "/uploads" or request.path.startswith("/uploads/")
    if not tus_path and request.endpoint != "uploads.create_request_upload":
        return response
    if request.method != "OPTIONS":
        response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    return response


def _number(name: str, value: str | None) -> int | None:
    """Header ``name``'s ``value``, a non-negative integer; None when absent,
    else a 400."""
    if value is None:
        return None
    if not DIGITS_RE.fullmatch(value.strip()):
        raise ApiError(400, f"{name} must be a non-negative whole number")
    return int(value.strip())


def _metadata() -> tuple[str, dict[str, str]]:
    """Upload-Metadata, as sent and decoded: ``key base64value`` pairs."""
    raw = request.headers.get("Upload-Metadata", "").strip()
    if len(raw) > MAX_METADATA:
        raise ApiError(400, f"Upload-Metadata is longer than {MAX_METADATA} bytes")
    decoded = {}
    for pair in filter(None, (item.strip() for item in raw.split(","))):
        key, _, value = pair.partition(" ")
        if not key or " " in value.strip() or key in decoded:
            raise ApiError(400, "Upload-Metadata must be 'key base64value' pairs")
        try:
            text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(
                400, f"Upload-Metadata {key}: not base64-encoded UTF-8"
            ) from None
        decoded[key] = text
    if len(decoded.get("description", "")) > DESCRIPTION_MAX:
        raise ApiError(400, f"Description is longer than {DESCRIPTION_MAX} characters")
    return raw, decoded


def _checksum() -> Checksum | None:
    """Upload-Checksum as (algorithm, digest), or None; a 400 when unusable."""
    value = request.headers.get("Upload-Checksum")
    if value is None:
        return None
    name, _, encoded = value.strip().partition(" ")
    if name.lower() not in CHECKSUMS:
        raise ApiError(
            400, f"Upload-Checksum: unsupported algorithm (use {', '.join(CHECKSUMS)})"
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        digest = b""
    algorithm = CHECKSUMS[name.lower()]
    if len(digest) != algorithm().digest_size:
        raise ApiError(400, "Upload-Checksum: the digest is not valid base64")
    return algorithm, digest


def _expiry_headers(upload: ResumableUpload) -> dict[str, str]:
    """Upload-Expires, for an upload that is not finished."""
    if upload.stored_file.complete:
        return {}
    return {"Upload-Expires": http_date(upload.expires_at)}


def _file_headers(upload: ResumableUpload) -> dict[str, str]:
    """Where a finished upload's file is: its id, and its metadata URL."""
    stored_file = upload.stored_file
    if not stored_file.complete:
        return {}
    return {
        FILE_ID_HEADER: str(stored_file.id),
        # A header, not a page: the token stays out of it.
        "Content-Location": url_for(
            "files.file_metadata", file_id=stored_file.id, token=None
        ),
    }


def _has_body() -> bool:
    """Whether the request sends a body (a length above zero, or chunked)."""
    if request.content_length is not None:
        return request.content_length > 0
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _set_length(upload: ResumableUpload, length: int) -> None:
    """Fix a deferred upload's length, holding it against the owner's quota."""
    stored_file = upload.stored_file
    if length < stored_file.size:
        raise ApiError(400, "Upload-Length is less than the bytes already received")
    upload.length = length
    quotas.reserve(stored_file, length)


def _received_logged(upload: ResumableUpload, checksum: Checksum | None) -> None:
    """_receive, and for a guest's upload to an upload request, the request's
    access log: the bytes this piece brought, and whether the file is done."""
    stored_file = upload.stored_file
    request_id, start = stored_file.request_id, stored_file.size
    if request_id is None:
        _receive(upload, checksum)
        return
    name = stored_file.filename
    try:
        _receive(upload, checksum)
    except ClientDisconnected:
        sent = max(_stored_size(stored_file.id) - start, 0)
        access_log.record_upload(request_id, name, sent, False)
        raise
    access_log.record_upload(
        request_id, name, stored_file.size - start, stored_file.complete
    )


def _stored_size(file_id: int) -> int:
    """What a file holds now, read afresh (0 once it is gone)."""
    db.session.rollback()
    size = db.session.execute(
        db.select(StoredFile.size).where(StoredFile.id == file_id)
    ).scalar_one_or_none()
    return size or 0


def _receive(upload: ResumableUpload, checksum: Checksum | None) -> None:
    """Append the request body at the upload's offset; finish at its length.

    Every byte read is stored as it comes, so a broken connection keeps what
    arrived (unless the piece has a checksum, which a part cannot match). A
    checksum mismatch (460), a piece past the length (413) or any error undoes
    the whole piece; going over the owner's quota or MAX_FILE_SIZE ends the
    upload, since it can never finish.
    """
    stored_file = upload.stored_file
    # Over the owner's quota or MAX_FILE_SIZE (NoRoom), an upload can never
    # finish: it ends. Past its own length, only the piece is refused.
    limit = quotas.SizeLimit(
        stored_file,
        cap=upload.length,
        cap_error=ApiError(413, "The piece goes past Upload-Length"),
    )
    announced = request.content_length
    if announced is not None:
        # The whole piece is held for before its first byte is read.
        try:
            limit.admit(stored_file.size + announced)
        except quotas.NoRoom:
            storage.discard(stored_file.id)
            raise
    # The limit above bounds the body, not the size limit of one request.
    request.max_content_length = limit.max_size - stored_file.size + 1
    digest = checksum[0]() if checksum else None
    writer = storage.ChunkWriter(stored_file, record_progress=True, limit=limit)
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    received = 0
    try:
        stream = request.stream
        while True:
            try:
                # Werkzeug types the stream IO[bytes], which declares no
                # readinto; every stream it gives (a LimitedStream, or a BytesIO
                # for a body without a length) has one.
                count = stream.readinto(buffer)  # type: ignore[attr-defined]
            except OSError:  # the server's word for a body cut short
                raise ClientDisconnected() from None
            except RequestEntityTooLarge:  # a chunked body past the limit
                raise limit.error from None
            if not count:
                # gunicorn ends a body cut short like a whole one: only its
                # length tells them apart.
                if announced is not None and received < announced:
                    raise ClientDisconnected()
                break
            received += count
            writer.write(view[:count])
            if digest is not None:
                digest.update(view[:count])
    except ClientDisconnected:
        writer.finish(keep=checksum is None)
        if writer.size > writer.start:
            _touch(upload)
        current_app.logger.info(
            "Upload %s: connection lost at offset %s", upload.id, writer.size
        )
        raise
    except ApiError as error:
        writer.finish(keep=False)
        if isinstance(error, quotas.NoRoom):
            storage.discard(stored_file.id)
        raise
    except storage.ConcurrentAppend:
        writer.close()
        raise ApiError(409, "Another request appended to this upload") from None
    except BaseException:
        writer.close()
        raise
    if digest is not None and checksum is not None and digest.digest() != checksum[1]:
        writer.finish(keep=False)
        raise ApiError(460, "Checksum mismatch: the piece was not kept")
    try:
        writer.finish()
    except storage.ConcurrentAppend:
        db.session.rollback()
        raise ApiError(409, "Another request appended to this upload") from None
    if upload.length is not None and stored_file.size == upload.length:
        storage.finish(stored_file)
    elif received:
        # Only bytes are use: empty PATCHes do not keep an idle upload alive.
        _touch(upload)


# An upload's expiry is moved on at most this often (or a tenth of its
# lifetime): not a commit, an fsync, for every PATCH.
TOUCH_EVERY_SECONDS = 60


def _touch(upload: ResumableUpload) -> None:
    """Move the upload's expiry on: it is in use."""
    lifetime = current_app.config["UPLOAD_EXPIRY_SECONDS"]
    expires_at = utcnow() + timedelta(seconds=lifetime)
    every = timedelta(seconds=min(TOUCH_EVERY_SECONDS, lifetime / 10))
    if expires_at - upload.expires_at >= every:
        upload.expires_at = expires_at
        db.session.commit()


def _offset_stream() -> None:
    """A piece must come as application/offset+octet-stream (else 415)."""
    mimetype, _ = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != OFFSET_STREAM:
        raise ApiError(415, f"Content-Type must be {OFFSET_STREAM}")


@bp.route("/uploads", methods=["OPTIONS"], provide_automatic_options=False)
@caller.nobody
def upload_capabilities() -> Response:
    """What this tus server supports: version, extensions, size, checksums.
    ---
    options:
      security: []
      responses:
        204:
          description: Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm
    """
    response = no_content()
    response.headers.update(
        {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(current_app.config["MAX_FILE_SIZE"]),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
        }
    )
    return response


@bp.route("/uploads", methods=["POST"], provide_automatic_options=False)
@check_for_token(scope="files:write")
def create_upload() -> Response:
    """Create a resumable upload (tus creation); its URL is in Location.
    ---
    post:
      parameters: [TusResumable, UploadLength, UploadDeferLength, UploadMetadata]
      requestBody:
        required: false
        description: The first piece (creation-with-upload)
        content:
          application/offset+octet-stream:
            schema:
              type: string
              format: binary
      responses:
        201:
          description: Created; Location is the upload's URL
        409: UploadConflict
        412: TusVersion
        415: TusMediaType
        460: ChecksumMismatch
    """
    length = _number("Upload-Length", request.headers.get("Upload-Length"))
    deferred = request.headers.get("Upload-Defer-Length")
    if deferred is not None and deferred.strip() != "1":
        raise ApiError(400, "Upload-Defer-Length must be 1")
    if (length is None) == (deferred is None):
        raise ApiError(400, "Send Upload-Length, or Upload-Defer-Length: 1")
    raw_metadata, metadata = _metadata()
    # Its lifetime runs from now (a 400 for one the policy refuses).
    expires_at = policies.file_expiry(g.user, metadata.get("expires_in"))

    def begin() -> StoredFile:
        return storage.begin(
            g.user.id,
            metadata.get("filename") or "unnamed",
            metadata.get("filetype"),
            metadata.get("description", ""),
            reserve=length or 0,
            commit=False,
            expires_at=expires_at,
        )

    return _create(g.user, length, raw_metadata, begin)


@bp.route("/r/<link>/uploads", methods=["POST"], provide_automatic_options=False)
@limit_request_passwords
@caller.upload_request()
def create_request_upload(link: str) -> Response:
    """Create a resumable upload into an upload request (tus creation), as
    its guest; its URL is in Location. The length must be known.
    ---
    post:
      security:
      - {}
      - requestPassword: []
      parameters: [RequestLink, TusResumable, UploadLength, UploadMetadata]
      requestBody:
        required: false
        description: The first piece (creation-with-upload)
        content:
          application/offset+octet-stream:
            schema:
              type: string
              format: binary
      responses:
        201:
          description: Created; Location is the upload's URL
        401: RequestLocked
        415: RequestKind
        404: RequestNotFound
        410: RequestGone
        412: TusVersion
        413:
          description: Past the request's caps or its owner's quota
          content:
            application/json:
              schema: ErrorSchema
    """
    access = g.caller.record
    if not access.unlocked:
        raise request_links.password_needed(access.wrong_password)
    length = _number("Upload-Length", request.headers.get("Upload-Length"))
    if length is None:
        raise ApiError(
            400, "Send Upload-Length: an upload request takes files of known size"
        )
    raw_metadata, metadata = _metadata()

    # A guest's file lives as long as its owner's files do by default.
    expires_at = policies.file_expiry(access.owner, None)

    def begin() -> StoredFile:
        stored_file = request_links.begin_file(
            access.upload_request,
            metadata.get("filename") or "unnamed",
            metadata.get("filetype"),
            length,
        )
        stored_file.expires_at = expires_at
        return stored_file

    return _create(access.owner, length, raw_metadata, begin)


def _create(
    owner: User,
    length: int | None,
    raw_metadata: str,
    begin: Callable[[], StoredFile],
) -> Response:
    """Create the upload ``begin`` makes the hidden file of (in the
    transaction this opens), with its first piece if the request carries
    one; the 201 with its URL."""
    with_body = _has_body()
    if with_body:
        _offset_stream()
    checksum = _checksum() if with_body else None
    key = upload_keys.new_key()

    @retry_on_conflict
    def create() -> ResumableUpload:
        """The hidden file and the upload that fills it, in one transaction."""
        try:
            stored_file = begin()
        except ApiError:
            db.session.rollback()
            raise
        upload = upload_keys.new_upload(key, stored_file, owner, length, raw_metadata)
        db.session.add(upload)
        return upload

    upload = create()
    stored_file = upload.stored_file
    if with_body:
        file_id = stored_file.id
        try:
            _received_logged(upload, checksum)
        except BaseException:
            # The client never learns this upload's URL: nothing may stay.
            storage.discard(file_id)
            raise
    elif length == 0:
        storage.finish(stored_file)
    headers = {
        "Location": url_for("uploads.upload_status", key=key, _external=True),
        **_expiry_headers(upload),
        **_file_headers(upload),
    }
    if with_body:
        headers["Upload-Offset"] = str(stored_file.size)
    response = no_content()
    response.status_code = 201
    response.headers.update(headers)
    return response


@bp.route("/uploads/<key>", methods=["HEAD"])
@caller.upload_key
def upload_status(key: str) -> Response:
    """An upload's offset and length: where to resume from.
    ---
    head:
      security: []
      parameters: [UploadKey, TusResumable]
      responses:
        200:
          description: Upload-Offset, Upload-Length (or Upload-Defer-Length),
            Upload-Metadata, Upload-Expires; Lockbox-File-Id once finished
        404: UploadNotFound
        410: UploadExpired
        412: TusVersion
    """
    upload = g.caller.record.upload
    headers = {"Upload-Offset": str(upload.stored_file.size)}
    if upload.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.length)
    if upload.upload_metadata:
        headers["Upload-Metadata"] = upload.upload_metadata
    headers.update({**_expiry_headers(upload), **_file_headers(upload)})
    response = current_app.response_class(status=200, headers=headers)
    del response.headers["Content-Type"]
    return response


@bp.route("/uploads/<key>", methods=["PATCH"], provide_automatic_options=False)
@caller.upload_key
def upload_piece(key: str) -> Response:
    """Append a piece at Upload-Offset; the last byte makes the file.
    ---
    patch:
      security: []
      parameters:
      - UploadKey
      - TusResumable
      - name: Upload-Offset
        in: header
        required: true
        schema: {type: integer, minimum: 0}
      - UploadLength
      - name: Upload-Checksum
        in: header
        required: false
        schema: {type: string}
      requestBody:
        required: true
        content:
          application/offset+octet-stream:
            schema:
              type: string
              format: binary
      responses:
        204:
          description: Stored; Upload-Offset is the new offset. Once the upload
            is complete, Lockbox-File-Id names the file it became
        404: UploadNotFound
        409: UploadConflict
        410: UploadExpired
        412: TusVersion
        415: TusMediaType
        460: ChecksumMismatch
    """
    upload = g.caller.record.upload
    stored_file = upload.stored_file
    _offset_stream()
    offset = _number("Upload-Offset", request.headers.get("Upload-Offset"))
    if offset is None:
        raise ApiError(400, "Upload-Offset is required")
    if offset != stored_file.size:
        raise ApiError(
            409, f"Upload-Offset is {offset}, the upload is at {stored_file.size}"
        )
    length = _number("Upload-Length", request.headers.get("Upload-Length"))
    if length is not None and upload.length is None:
        _set_length(upload, length)
    elif length is not None and length != upload.length:
        raise ApiError(400, "Upload-Length cannot change once set")
    checksum = _checksum()
    if stored_file.complete:
        if _has_body():
            raise ApiError(409, "The upload is complete")
    else:
        db.session.commit()
        _received_logged(upload, checksum)
    response = no_content()
    response.headers.update(
        {
            "Upload-Offset": str(stored_file.size),
            **_expiry_headers(upload),
            **_file_headers(upload),
        }
    )
    return response


@bp.route("/uploads/<key>", methods=["DELETE"], provide_automatic_options=False)
@caller.upload_key
def terminate_upload(key: str) -> Response:
    """Terminate an upload: what it stored is removed (tus termination).

    A finished upload's file stays: the URL is forgotten.
    ---
    delete:
      security: []
      parameters: [UploadKey, TusResumable]
      responses:
        204:
          description: Removed
        404: UploadNotFound
        410: UploadExpired
        412: TusVersion
    """
    upload = g.caller.record.upload
    upload_id, file_id = upload.id, upload.file_id
    finished = upload.stored_file.complete

    @retry_on_conflict
    def terminate() -> None:
        if finished:
            # The file is an ordinary one now: only the upload's URL is
            # forgotten; the file goes with DELETE /files/<id> (an account
            # token's job).
            db.session.execute(
                db.delete(ResumableUpload).where(ResumableUpload.id == upload_id)
            )
        else:
            storage.delete_stored_files(StoredFile.id == file_id)

    terminate()
    return no_content()
