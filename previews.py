"""What a browser may show of a file in a page, and as what.

Images, video and audio play from the file's own downloads (Range requests,
so a film seeks without coming whole); PDFs are drawn by PDF.js (vendored
under static/vendor/pdfjs/); text shows as plain text in a sandboxed frame.
Everything else is only downloaded.

The type a file is shown as comes from an allowlist, whatever the uploader
said: no file is ever served inline as a type a browser would run as a page
(HTML, SVG, XML, JavaScript). Text of every kind, SVG and HTML included, is
served as ``text/plain``: its source shows, nothing in it runs. Inline answers
keep the download's ``nosniff`` and ``Content-Security-Policy: sandbox``.
"""

from flask import request

from errors import ApiError
from models import StoredFile

IMAGE, VIDEO, AUDIO, PDF, TEXT = "image", "video", "audio", "pdf", "text"

# What browsers show by themselves, safely: pictures and sound, no documents.
IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"}
)
VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/ogg"})
AUDIO_TYPES = frozenset(
    {
        "audio/mpeg",
        "audio/mp4",
        "audio/aac",
        "audio/ogg",
        "audio/opus",
        "audio/wav",
        "audio/x-wav",
        "audio/webm",
        "audio/flac",
    }
)
PDF_TYPES = frozenset({"application/pdf"})
# Shown as text/plain, whatever they are: their source, never run.
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "application/x-sh",
        "application/sql",
        "image/svg+xml",
    }
)
# Text longer than this is not shown in the page (the frame loads it whole).
TEXT_PREVIEW_MAX = 1024 * 1024
PLAIN_TEXT = "text/plain; charset=utf-8"

KINDS = (
    (IMAGE_TYPES, IMAGE),
    (VIDEO_TYPES, VIDEO),
    (AUDIO_TYPES, AUDIO),
    (PDF_TYPES, PDF),
)


def essence(content_type: str) -> str:
    """A media type without its parameters, in lower case."""
    return content_type.partition(";")[0].strip().lower()


def preview_kind(stored_file: StoredFile) -> str | None:
    """How the page shows ``stored_file`` (IMAGE, VIDEO, AUDIO, PDF or TEXT),
    or None when it can only be downloaded."""
    media_type = essence(stored_file.content_type)
    for types, kind in KINDS:
        if media_type in types:
            return kind
    is_text = media_type.startswith("text/") or media_type in TEXT_TYPES
    if is_text and stored_file.size <= TEXT_PREVIEW_MAX:
        return TEXT
    return None


def inline_type(stored_file: StoredFile) -> str | None:
    """The Content-Type ``stored_file`` is served inline as, or None when it
    is not served inline at all (it downloads as an attachment)."""
    kind = preview_kind(stored_file)
    if kind is None:
        return None
    return PLAIN_TEXT if kind == TEXT else essence(stored_file.content_type)


def asked_inline(stored_file: StoredFile) -> str | None:
    """The type to serve ``stored_file`` inline as, when the download asks
    for it (``?inline=1``) and a page may show it; else None: a download. Any
    other ``inline`` is a 400."""
    asked = request.args.getlist("inline")
    if not asked:
        return None
    if asked != ["1"]:
        raise ApiError(400, "inline must be 1, once")
    return inline_type(stored_file)
