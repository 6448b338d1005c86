"""Files: the upload form and API, and the one place bytes move into chunk rows."""

import hashlib
import mimetypes
import re
import unicodedata

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
from marshmallow import ValidationError
from werkzeug.exceptions import ClientDisconnected
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
from errors import ApiError, wants_html
from models import (
    FileChunk,
    StoredFile,
    db,
    stored_file_schema,
    upload_form_schema,
    utcnow,
)

bp = Blueprint("files", __name__)

FILE_FIELD = "inputFile"
# How much of the request body is read at a time.
READ_SIZE = 256 * 1024
# All text fields of one upload together; a description is 200 characters.
MAX_FIELD_BYTES = 64 * 1024
# The most unparsed bytes the multipart decoder may hold (part headers, say).
MAX_DECODER_BUFFER = 1024 * 1024
MAX_PARTS = 16
MAX_FILENAME_LENGTH = 255
# Commit every few chunks: short transactions, yet not an fsync per chunk.
CHUNKS_PER_COMMIT = 8
MIMETYPE_RE = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$"
)


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


class ChunkWriter:
    """Streams one file's bytes into FileChunk rows of ``chunk_size`` bytes.

    Memory stays at about one chunk whatever the file's size. Chunks are committed
    as they fill; the file stays invisible (``complete`` false) until ``finish``.
    """

    def __init__(self, stored_file: StoredFile, chunk_size: int):
        self.stored_file = stored_file
        self.file_id = stored_file.id
        self.chunk_size = chunk_size
        self.buffer = bytearray()
        self.seq = 0
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        """Add bytes to the file, storing every chunk that fills."""
        self.digest.update(data)
        self.size += len(data)
        self.buffer += data
        while len(self.buffer) >= self.chunk_size:
            self._store_chunk(self.chunk_size)

    def _store_chunk(self, length: int) -> None:
        """Insert the next ``length`` buffered bytes as one chunk row."""
        piece = bytes(memoryview(self.buffer)[:length])
        del self.buffer[:length]
        db.session.execute(
            db.insert(FileChunk),
            {"file_id": self.file_id, "seq": self.seq, "data": piece},
        )
        self.seq += 1
        if self.seq % CHUNKS_PER_COMMIT == 0:
            self.stored_file.updated_at = utcnow()
            db.session.commit()

    def finish(self) -> None:
        """Store the last partial chunk and record size and digest (not committed)."""
        if self.buffer:
            self._store_chunk(len(self.buffer))
        self.stored_file.size = self.size
        self.stored_file.sha256 = self.digest.hexdigest()


def delete_stored_files(*where) -> int:
    """Delete the files matching ``where`` with all their chunks; the caller commits."""
    file_ids = db.select(StoredFile.id).where(*where)
    db.session.execute(db.delete(FileChunk).where(FileChunk.file_id.in_(file_ids)))
    return db.session.execute(db.delete(StoredFile).where(*where)).rowcount


def discard_upload(file_id: int) -> None:
    """Remove a file that did not finish uploading, with every chunk it wrote."""
    db.session.rollback()
    try:
        delete_stored_files(StoredFile.id == file_id)
        db.session.commit()
    except Exception:
        # The database may be what failed; `files gc` removes the rest later.
        db.session.rollback()
        current_app.logger.warning("Could not remove unfinished upload %s", file_id)


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


class UploadReceiver:
    """Reads a multipart upload from the request stream, one piece at a time.

    The file part goes straight into a ChunkWriter; text fields are kept (64 KiB
    at most) and validated. Whatever goes wrong, nothing half-written stays visible.
    """

    def __init__(self, owner):
        self.owner = owner
        self.fields: dict[str, bytearray] = {}
        self.field_bytes = 0
        self.writer: ChunkWriter | None = None
        self._in_file = False
        self._field: str | None = None

    def receive(self) -> StoredFile:
        """Store the upload and return its file, complete and committed."""
        decoder = MultipartDecoder(
            _multipart_boundary(), MAX_DECODER_BUFFER, max_parts=MAX_PARTS
        )
        stream = request.stream
        try:
            while True:
                data = stream.read(READ_SIZE)
                decoder.receive_data(data or None)
                if self._drain(decoder) or not data:
                    break
            return self._finish()
        except BaseException:
            if self.writer is not None:
                discard_upload(self.writer.file_id)
            raise

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
            complete=False,
        )
        db.session.add(stored_file)
        db.session.commit()
        self.writer = ChunkWriter(stored_file, current_app.config["CHUNK_SIZE"])

    def _form(self) -> dict:
        """The text fields, validated; a 400 when they do not fit."""
        try:
            text = {
                name: value.decode("utf-8")
                for name, value in self.fields.items()
                if name in upload_form_schema.fields
            }
        except UnicodeDecodeError:
            raise ApiError(400, "Form fields must be UTF-8 text") from None
        try:
            return upload_form_schema.load(text)
        except ValidationError as error:
            messages = next(iter(error.normalized_messages().values()))
            raise ApiError(400, str(messages[0])) from None

    def _finish(self) -> StoredFile:
        """Check the whole form, then make the file visible."""
        if self.writer is None:
            raise ApiError(400, "No file part: send the file in the inputFile field")
        form = self._form()
        self.writer.finish()
        stored_file = self.writer.stored_file
        stored_file.description = form["description"]
        stored_file.complete = True
        stored_file.updated_at = utcnow()
        db.session.commit()
        return stored_file


@bp.get("/")
@check_for_token
def index():
    """The upload form."""
    return render_template("index.html", user=g.user, token=g.token)


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
    return jsonify(body), 201
