"""Files: the upload form and API, and the one place bytes move into chunk rows."""

import mimetypes
import re
import unicodedata
from urllib.parse import quote

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Row, bindparam, func
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
)

from authentication import check_for_token
from errors import ApiError, load_or_400, no_content, wants_html
from models import (
    StoredFile,
    db,
    page_query_schema,
    stored_file_schema,
    upload_form_schema,
    utcnow,
)
from storage import ChunkWriter, delete_stored_files, discard_upload, read_chunks

bp = Blueprint("files", __name__)

FILE_FIELD = "inputFile"
# The request body is read 1 MiB at a time (fewer, larger socket reads; gunicorn
# copies its read-ahead buffer on every read) and handed to the multipart decoder
# in 64 KiB slices, the size its boundary search is fastest at.
READ_SIZE = 1024 * 1024
DECODE_SIZE = 64 * 1024
# All text fields of one upload together; a description is 200 characters.
MAX_FIELD_BYTES = 64 * 1024
# The most unparsed bytes the multipart decoder may hold (part headers, say).
MAX_DECODER_BUFFER = 1024 * 1024
# Parts of one upload: the file, the two text fields and room for the extra
# fields some clients add (they are ignored); more is a malformed form.
MAX_PARTS = 16
MAX_FILENAME_LENGTH = 255
# What may stand in the quoted ASCII filename= of Content-Disposition.
DISPOSITION_UNSAFE_RE = re.compile(r"[^A-Za-z0-9 !#$&'()+,.;=@\[\]^_`{}~-]")
SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
MIMETYPE_RE = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$"
)


@bp.app_template_filter("filesize")
def human_size(size: int) -> str:
    """A byte count as people read it: 512 B, 1.5 KiB, 3.2 MiB."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def clean_filename(name: str) -> str:
    """The name a file is kept under: last path component, printable, <= 255."""
    # Browsers escape these three in multipart filenames (HTML form encoding).
    name = name.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    # Control and format characters (CR, LF, NUL, bidi overrides) never survive.
    name = "".join(
        ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs")
    )
    name = name.strip()
    if name in ("", ".", ".."):
        return "unnamed"
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) <= 16:
            keep = MAX_FILENAME_LENGTH - len(extension) - 1
            name = f"{stem[:keep]}.{extension}"
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name


def content_type_for(declared: str | None, filename: str) -> str:
    """The declared media type when it is well-formed, else a guess from the name."""
    mimetype, _ = parse_options_header(declared or "")
    mimetype = mimetype.lower()
    if MIMETYPE_RE.match(mimetype):
        return mimetype
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _multipart_boundary() -> bytes:
    """The boundary of this multipart/form-data request, or a 400/415 error."""
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != "multipart/form-data":
        raise ApiError(
            415, "Expected a multipart/form-data body with a file in inputFile"
        )
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200 or not boundary.isascii():
        raise ApiError(400, "The multipart body has no valid boundary")
    return boundary.encode("ascii")


def _expected_sha256_header() -> str | None:
    """The digest the client announced in ``X-Content-SHA256``, checked for form."""
    value = request.headers.get("X-Content-SHA256")
    if value is None:
        return None
    if not SHA256_RE.fullmatch(value.strip()):
        raise ApiError(400, "X-Content-SHA256 must be 64 hexadecimal characters")
    return value.strip()


class UploadReceiver:
    """Reads a multipart upload from the request stream, one piece at a time.

    The file part goes straight into a ChunkWriter; text fields are kept (64 KiB
    at most) and validated. Whatever goes wrong, nothing half-written stays visible.
    """

    def __init__(self, owner):
        self.owner = owner
        self.expected_sha256 = _expected_sha256_header()
        self.fields: dict[str, bytearray] = {}
        self.field_bytes = 0
        self.writer: ChunkWriter | None = None
        self._in_file = False
        self._field: str | None = None
        self._parts = 0

    def receive(self) -> StoredFile:
        """Store the upload and return its file, complete and committed."""
        # The decoder's own part limit is a backstop one above ours: _drain
        # refuses the part after the last allowed one with a 400 of its own.
        decoder = MultipartDecoder(
            _multipart_boundary(), MAX_DECODER_BUFFER, max_parts=MAX_PARTS + 1
        )
        # End the token check's transaction: none may stay open while the
        # client takes its time sending the body.
        db.session.commit()
        stream = request.stream
        # One buffer for the whole body: the decoder copies what it is given.
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        try:
            complete = False
            while not complete:
                count = stream.readinto(buffer)
                if not count:
                    self._feed(decoder, None)
                    self._drain(decoder)
                    break
                for offset in range(0, count, DECODE_SIZE):
                    self._feed(decoder, view[offset : min(offset + DECODE_SIZE, count)])
                    if complete := self._drain(decoder):
                        break
            return self._finish()
        except BaseException:
            if self.writer is not None:
                self.writer.close()
                discard_upload(self.writer.file_id)
            raise

    @staticmethod
    def _feed(decoder: MultipartDecoder, data) -> None:
        """Hand the decoder more of the body (None: the end)."""
        try:
            decoder.receive_data(data)
        except RequestEntityTooLarge:
            # The decoder's word for part headers longer than its buffer: not
            # the body's size, which MAX_CONTENT_LENGTH alone limits.
            raise ApiError(400, "A part's headers are too large") from None

    def _drain(self, decoder: MultipartDecoder) -> bool:
        """Handle every event the decoder has; True once the body is complete."""
        while True:
            try:
                event = decoder.next_event()
            except ValueError:
                raise ApiError(400, "The multipart body is malformed") from None
            if isinstance(event, NeedData):
                return False
            if isinstance(event, Epilogue):
                return True
            if isinstance(event, Data):
                self._take(event)
                continue
            if isinstance(event, Field | File):
                self._parts += 1
                if self._parts > MAX_PARTS:
                    raise ApiError(400, f"The form has more than {MAX_PARTS} parts")
            # A new part: the file, a text field, or a file we do not know (skipped).
            self._in_file = isinstance(event, File) and event.name == FILE_FIELD
            self._field = event.name if isinstance(event, Field) else None
            if self._in_file:
                self._start_file(event)
            elif self._field is not None:
                self.fields[self._field] = bytearray()

    def _take(self, event: Data) -> None:
        """Route a piece of part data to the file writer or a text field."""
        if self._in_file:
            self.writer.write(event.data)
        elif self._field is not None:
            self.field_bytes += len(event.data)
            if self.field_bytes > MAX_FIELD_BYTES:
                raise ApiError(400, "The form's text fields are too large")
            self.fields[self._field] += event.data
            if not event.more_data and self.writer is None:
                # Fields sent before the file are checked before any byte is stored.
                self._form()

    def _start_file(self, event: File) -> None:
        """Begin storing the file part: a hidden row first, then its chunks."""
        if self.writer is not None:
            raise ApiError(400, "Send one file per upload")
        if not event.filename:
            raise ApiError(400, "No file selected")
        filename = clean_filename(event.filename)
        stored_file = StoredFile(
            owner=self.owner,
            filename=filename,
            content_type=content_type_for(event.headers.get("Content-Type"), filename),
            chunk_size=current_app.config["CHUNK_SIZE"],
            complete=False,
        )
        db.session.add(stored_file)
        db.session.commit()
        self.writer = ChunkWriter(stored_file)

    def _form(self) -> dict:
        """The text fields, validated; a 400 when they do not fit."""
        try:
            text = {name: value.decode("utf-8") for name, value in self.fields.items()}
        except UnicodeDecodeError:
            raise ApiError(400, "Form fields must be UTF-8 text") from None
        return load_or_400(upload_form_schema, text)

    def _finish(self) -> StoredFile:
        """Check the whole form and the digest, then make the file visible."""
        if self.writer is None:
            raise ApiError(400, "No file part: send the file in the inputFile field")
        form = self._form()
        self.writer.finish()
        stored_file = self.writer.stored_file
        for expected in (self.expected_sha256, form["sha256"]):
            if expected is not None and expected.lower() != stored_file.sha256:
                raise ApiError(400, "The file's SHA-256 does not match the one sent")
        stored_file.description = form["description"]
        stored_file.complete = True
        stored_file.updated_at = utcnow()
        db.session.commit()
        return stored_file


# A listing loads what it shows: the columns of the public metadata, not whole rows.
LISTED_FIELDS = tuple(stored_file_schema.fields)
LISTED_COLUMNS = [getattr(StoredFile, name) for name in LISTED_FIELDS]


def listed_file(row: Row) -> dict:
    """A listed row as the API shows a file: what ``stored_file_schema`` dumps.

    Built directly, since marshmallow's work per field was half the cost of a
    listing; the row's first values are the LISTED_COLUMNS, in order.
    """
    item = dict(zip(LISTED_FIELDS, row, strict=False))
    item["created_at"] = item["created_at"].isoformat()
    return item


# The caller's finished files: their count, and a page of them newest first.
# Built once and run with parameters: building a statement costs more than
# running it.
OWNED = {"owner_id": bindparam("owner_id"), "complete": True}
OWNED_COUNT = db.select(func.count()).select_from(StoredFile).filter_by(**OWNED)
# The count is a subquery evaluated once, from the listing index, and comes
# back on every row of the page: one query answers both.
OWNED_PAGE = (
    db.select(*LISTED_COLUMNS, OWNED_COUNT.scalar_subquery().label("total"))
    .filter_by(**OWNED)
    .order_by(StoredFile.created_at.desc(), StoredFile.id.desc())
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)


class OwnedFilesPagination(Pagination):
    """Flask-SQLAlchemy's pagination over OWNED_PAGE: one query for a page and
    its total. Only a page past the end, which has no row to carry the total,
    asks for the count alone."""

    def _query_items(self) -> list[Row]:
        """The page's rows; each also carries the total."""
        rows = db.session.execute(
            OWNED_PAGE,
            {
                "owner_id": self._query_args["owner_id"],
                "limit": self.per_page,
                "offset": self._query_offset,
            },
        ).all()
        self._total = rows[0].total if rows else None
        return rows

    def _query_count(self) -> int:
        """The total the rows brought, or a count of its own for an empty page."""
        if self._total is not None:
            return self._total
        return db.session.execute(
            OWNED_COUNT, {"owner_id": self._query_args["owner_id"]}
        ).scalar_one()


def owned_files_page(page: int, per_page: int) -> OwnedFilesPagination:
    """One page of the caller's finished files, newest first (no bytes loaded)."""
    # per_page was validated already (PageQuerySchema): no second cap here.
    return OwnedFilesPagination(
        page=page,
        per_page=per_page,
        max_per_page=None,
        error_out=False,
        owner_id=g.user.id,
    )


@bp.get("/")
@check_for_token
def index():
    """The upload form and the caller's files."""
    query = load_or_400(page_query_schema, request.args.to_dict())
    page = owned_files_page(query["page"], query["per_page"])
    return render_template("index.html", user=g.user, token=g.token, page=page)


@bp.post("/upload")
@check_for_token
def upload():
    """Store one file sent as multipart/form-data in ``inputFile``."""
    try:
        stored_file = UploadReceiver(g.user).receive()
    except ClientDisconnected:
        current_app.logger.info("Client disconnected during an upload; nothing kept")
        raise
    message = f"file {stored_file.filename} uploaded successfully"
    if wants_html():
        flash(message, "success")
        return redirect(url_for("files.index", token=g.token), 303)
    body = stored_file_schema.dump(stored_file)
    body["message"] = message
    location = url_for("files.file_metadata", file_id=stored_file.id)
    return jsonify(body), 201, {"Location": location}


def content_disposition(filename: str) -> str:
    """An RFC 6266 attachment header: an ASCII ``filename`` and, when needed,
    ``filename*`` in UTF-8. No quote, backslash or control character gets through."""
    fallback = (
        unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    )
    fallback = DISPOSITION_UNSAFE_RE.sub("_", fallback).strip() or "download"
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += "; filename*=UTF-8''" + quote(filename, safe="")
    return value


def _range_for(stored_file: StoredFile, etag: str) -> tuple[int, int] | None:
    """The single byte range to send, None for the whole file; 416 when unsatisfiable.

    Several ranges, an unparsable Range header, or an If-Range that no longer
    matches all mean: send the whole file.
    """
    requested = request.range
    if requested is None or requested.units != "bytes" or len(requested.ranges) != 1:
        return None
    if request.headers.get("If-Range", "").lstrip().startswith("W/"):
        # RFC 9110 13.1.5: If-Range needs a strong validator; a weak one never
        # matches.
        return None
    if_range = request.if_range
    if if_range.etag is not None and if_range.etag != etag:
        return None
    if if_range.date is not None and if_range.date != _last_modified(stored_file):
        return None
    if "If-Range" in request.headers and not (if_range.etag or if_range.date):
        return None
    size = stored_file.size
    start, stop = requested.ranges[0]
    if start < 0:
        # bytes=-n: the last n bytes, the whole file when n exceeds it.
        start, stop = max(size + start, 0), size
    else:
        stop = size if stop is None else min(stop, size)
    if start >= size:
        raise ApiError(
            416, "Requested range not satisfiable", {"Content-Range": f"bytes */{size}"}
        )
    return start, stop


def _last_modified(stored_file: StoredFile):
    """Last-Modified as HTTP carries it: whole seconds."""
    return stored_file.created_at.replace(microsecond=0)


def file_response(stored_file: StoredFile):
    """A streamed response with a file's bytes, whole or one range, or a 304."""
    etag = stored_file.sha256
    headers = {
        "Content-Disposition": content_disposition(stored_file.filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
    }
    # content_type, not mimetype: Flask would add "charset=utf-8" to text types,
    # a claim about bytes Lockbox never looked at.
    response = current_app.response_class(
        content_type=stored_file.content_type, headers=headers
    )
    response.set_etag(etag)
    response.last_modified = _last_modified(stored_file)
    if request.if_none_match.contains_weak(etag):
        response.status_code = 304
        return response
    span = _range_for(stored_file, etag)
    start, stop = span if span else (0, stored_file.size)
    if span:
        response.status_code = 206
        response.headers["Content-Range"] = (
            f"bytes {start}-{stop - 1}/{stored_file.size}"
        )
    response.response = read_chunks(stored_file, start, stop)
    response.direct_passthrough = True
    response.content_length = stop - start
    return response


# File ids are INT columns: anything above 2^31-1 (or 0) is simply not found. The
# check is here, not in the URL rule: a rule that refuses the number answers 405,
# not 404, to methods other than GET.
FILE_ID = "<int:file_id>"
MAX_FILE_ID = 2**31 - 1


def owned_file_or_404(file_id: int) -> StoredFile:
    """The caller's finished file with this id; 404 for anyone else's or none."""
    if not 1 <= file_id <= MAX_FILE_ID:
        raise ApiError(404, "File not found")
    stored_file = db.session.execute(
        db.select(StoredFile).filter_by(id=file_id, owner_id=g.user.id, complete=True)
    ).scalar_one_or_none()
    if stored_file is None:
        raise ApiError(404, "File not found")
    return stored_file


@bp.get("/files")
@check_for_token
def list_files():
    """The caller's files, newest first, a page at a time."""
    query = load_or_400(page_query_schema, request.args.to_dict())
    page = owned_files_page(query["page"], query["per_page"])
    return jsonify(
        items=[listed_file(row) for row in page.items],
        page=page.page,
        per_page=page.per_page,
        total=page.total,
    )


@bp.get(f"/files/{FILE_ID}")
@check_for_token
def file_metadata(file_id):
    """One file's metadata."""
    return jsonify(stored_file_schema.dump(owned_file_or_404(file_id)))


@bp.delete(f"/files/{FILE_ID}")
@check_for_token
def delete_file(file_id):
    """Delete a file and all its chunks, in one transaction."""
    owned_file_or_404(file_id)
    delete_stored_files(StoredFile.id == file_id)
    db.session.commit()
    return no_content()


@bp.post(f"/files/{FILE_ID}/delete")
@check_for_token
def delete_file_form(file_id):
    """Delete from the page: asks on a page first unless already confirmed."""
    stored_file = owned_file_or_404(file_id)
    if request.form.get("confirm") != "yes":
        return render_template(
            "confirm_delete.html", user=g.user, token=g.token, file=stored_file
        )
    delete_stored_files(StoredFile.id == file_id)
    db.session.commit()
    flash(f"file {stored_file.filename} deleted", "success")
    return redirect(url_for("files.index", token=g.token), 303)


@bp.get(f"/files/{FILE_ID}/download")
@check_for_token
def download_file(file_id):
    """The file's bytes, streamed from its chunks; ranges and conditionals honoured."""
    stored_file = owned_file_or_404(file_id)
    return file_response(stored_file)
