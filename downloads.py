"""The answer to a download: a file's bytes streamed from storage, whole or one
range, with conditional requests (ETag, Last-Modified, If-Range) honoured and
an attachment disposition that cannot inject a header; or several files as
one zip, streamed as it is made (zipstream-ng)."""

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import PurePosixPath
from urllib.parse import quote

from flask import Response, current_app, request
from zipstream import ZIP_STORED, ZipStream

from errors import ApiError
from models import StoredFile
from storage import opened_first, read_range

# What may stand in the quoted ASCII filename= of Content-Disposition.
DISPOSITION_UNSAFE_RE = re.compile(r"[^A-Za-z0-9 !#$&'()+,.;=@\[\]^_`{}~-]")


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """An RFC 6266 header (an attachment, or ``inline``): an ASCII ``filename``
    and, when needed, ``filename*`` in UTF-8. No quote, backslash or control
    character gets through."""
    fallback = (
        unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    )
    fallback = DISPOSITION_UNSAFE_RE.sub("_", fallback).strip() or "download"
    value = f'{disposition}; filename="{fallback}"'
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


def _last_modified(stored_file: StoredFile) -> datetime:
    """Last-Modified as HTTP carries it: whole seconds."""
    return stored_file.created_at.replace(microsecond=0)


def file_response(
    stored_file: StoredFile,
    transfer: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None,
    inline_as: str | None = None,
) -> Response:
    """A streamed response with a file's bytes, whole or one range, or a 304.

    ``transfer``, when given, is called with the body about to be sent (a
    whole file or a range) and returns the body to send: share links count
    their downloads this way. Never for HEAD, a 304 or a 416.

    ``inline_as``: shown in the page as this type (previews.inline_type)
    rather than saved as an attachment in its stored type; still sandboxed
    and never sniffed.
    """
    etag = stored_file.sha256
    assert etag is not None  # every finished file has its digest
    disposition = "attachment" if inline_as is None else "inline"
    headers = {
        "Content-Disposition": content_disposition(stored_file.filename, disposition),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
    }
    # content_type, not mimetype: Flask would add "charset=utf-8" to text types,
    # a claim about bytes Lockbox never looked at.
    response = current_app.response_class(
        content_type=inline_as or stored_file.content_type, headers=headers
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
    body: Iterator[bytes] = read_range(stored_file, start, stop)
    if request.method != "HEAD":
        body = opened_first(stored_file.id, body)
        if transfer is not None:
            body = transfer(body)
    # Not direct_passthrough: with it, Werkzeug hands the body to the server
    # bare and the response's own close (the request's log line, logs.py)
    # never runs.
    response.response = body
    response.content_length = stop - start
    return response


# What Windows will not put in a file's name; a zip's names are unpacked there too.
ZIP_UNSAFE_RE = re.compile(r'[<>:"|?*\\]')
# The longest name most file systems take, in bytes (ext4, and NTFS's 255
# characters are at least this many).
MAX_NAME_BYTES = 255


def _fit(stem: str, suffix: str) -> str:
    """``stem + suffix``, the stem cut until the whole fits MAX_NAME_BYTES."""
    while stem and len((stem + suffix).encode()) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem + suffix


def zip_names(names: list[str]) -> list[str]:
    """The names files get in a zip: as stored, but with what Windows refuses
    in a name made "_", and a name that came before (in any case, as Windows
    and macOS unpack) given " (2)", " (3)"... before its extension, each
    kept within MAX_NAME_BYTES."""
    taken: set[str] = set()
    unique = []
    for name in names:
        path = PurePosixPath(ZIP_UNSAFE_RE.sub("_", name))
        stem, suffix = path.stem, path.suffix
        candidate, number = _fit(stem, suffix), 1
        while candidate.casefold() in taken:
            number += 1
            candidate = _fit(stem, f" ({number}){suffix}")
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


def zip_response(
    files: list[StoredFile],
    filename: str,
    transfer: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None,
) -> Response:
    """Files as one zip, streamed from storage as it is made: stored, not
    compressed, so its length is known before the first byte (the download
    shows its progress), and memory stays at a chunk whatever the total;
    ZIP64 where sizes or offsets pass 4 GiB. No Range: a resume starts over.

    Its ETag is weak (the entries carry the time they were zipped) and comes
    from the names and digests of its files: the same files, the same ETag.
    ``transfer`` as for file_response; never for HEAD or a 304.
    """
    names = zip_names([stored_file.filename for stored_file in files])
    fingerprint = hashlib.sha256()
    for name, stored_file in zip(names, files, strict=True):
        fingerprint.update(f"{name}\0{stored_file.sha256}\0".encode())
    etag = fingerprint.hexdigest()
    headers = {
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, no-cache",
    }
    response = current_app.response_class(
        content_type="application/zip", headers=headers
    )
    response.set_etag(etag, weak=True)
    if request.if_none_match.contains_weak(etag):
        response.status_code = 304
        return response
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    first_read = request.method == "HEAD"
    for name, stored_file in zip(names, files, strict=True):
        pieces: Iterator[bytes] = read_range(stored_file, 0, stored_file.size)
        if not first_read and stored_file.size:
            # The answer's first chunk (its first file's that is not empty) is
            # opened before its status line.
            pieces = opened_first(stored_file.id, pieces)
            first_read = True
        archive.add(pieces, name, size=stored_file.size)
    response.content_length = len(archive)
    body: Iterator[bytes] = iter(archive)
    if transfer is not None and request.method != "HEAD":
        body = transfer(body)
    response.response = body
    return response
