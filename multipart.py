"""Multipart form uploads: the ``inputFile`` part read from the request stream
into storage, the text fields checked, nothing half-written left behind."""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
)

import policies
import quotas
import storage
from errors import ApiError
from models import StoredFile, User, db
from request_data import load_or_400
from schemas import upload_form_schema

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
SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


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

    def __init__(
        self,
        owner: User,
        start: Callable[[str, str | None, int], StoredFile] | None = None,
    ) -> None:
        self.owner = owner
        # Begins the file (committed) from its name, declared type and the
        # bytes to hold for it; storage.begin in the owner's account unless
        # the caller says otherwise (an upload request's guest).
        self.start = start
        self.expected_sha256 = _expected_sha256_header()
        self.fields: dict[str, bytearray] = {}
        self.field_bytes = 0
        self.writer: storage.ChunkWriter | None = None
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
                # Werkzeug types the stream IO[bytes], which declares no
                # readinto; every stream it gives (a LimitedStream, or a BytesIO
                # for a body without a length) has one.
                count = stream.readinto(buffer)  # type: ignore[attr-defined]
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
                storage.discard(self.writer.file_id)
            raise

    @staticmethod
    def _feed(decoder: MultipartDecoder, data: bytes | memoryview | None) -> None:
        """Hand the decoder more of the body (None: the end)."""
        try:
            # Typed bytes, but it extends a bytearray with it: any bytes-like
            # object will do, a memoryview of the read buffer too.
            decoder.receive_data(data)  # type: ignore[arg-type]
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
            if isinstance(event, File) and self._in_file:
                self._start_file(event)
            elif self._field is not None:
                self.fields[self._field] = bytearray()

    def _take(self, event: Data) -> None:
        """Route a piece of part data to the file writer or a text field."""
        if self._in_file:
            assert self.writer is not None  # _start_file made it, or refused
            self.writer.write(event.data)
        elif self._field is not None:
            self.field_bytes += len(event.data)
            if self.field_bytes > MAX_FIELD_BYTES:
                raise ApiError(400, "The form's text fields are too large")
            self.fields[self._field] += event.data
            if not event.more_data and self.writer is None:
                # Fields sent before the file are checked before any byte is stored.
                self._expiry(self._form())

    def _start_file(self, event: File) -> None:
        """Begin storing the file part: a hidden row first, then its chunks."""
        if self.writer is not None:
            raise ApiError(400, "Send one file per upload")
        if not event.filename:
            raise ApiError(400, "No file selected")
        # The body's length holds the owner's quota for the file (which is a
        # little shorter); without one, the file is limited as it streams.
        declared = event.headers.get("Content-Type")
        reserve = request.content_length or 0
        if self.start is not None:
            stored_file = self.start(event.filename, declared, reserve)
        else:
            stored_file = storage.begin(
                self.owner.id, event.filename, declared, reserve=reserve
            )
        self.writer = storage.ChunkWriter(
            stored_file, limit=quotas.SizeLimit(stored_file)
        )

    def _form(self) -> dict[str, Any]:
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
        expires_at = self._expiry(form)
        self.writer.finish()
        return storage.finish(
            self.writer.stored_file,
            description=form["description"],
            expected=(self.expected_sha256, form.get("sha256")),
            expires_at=expires_at,
        )

    def _expiry(self, form: dict[str, Any]) -> datetime | None:
        """When the file expires: in the lifetime the owner's own upload asks
        for (a guest's, through an upload request, asks nothing), else the
        owner's default, within the policy (a 400 past it)."""
        asked = form.get("expires_in") if self.start is None else None
        return policies.file_expiry(self.owner, asked)
