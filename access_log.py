"""The access log: who fetched what through a share link, and who sent what
through an upload request (``AccessEvent`` rows, which the owner reads on the
link's or request's page and through the API, and ``files gc`` forgets after
ACCESS_LOG_DAYS).

Writing it never holds up or fails the transfer it describes: a download's
row is written once its answer has gone out (when the server closes the
response), an upload's once its bytes are stored, each in a transaction of
its own; a row that cannot be written is a warning in the log, nothing more.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import cast

from flask import Flask, Response, current_app, request

from models import AccessEvent, db

DOWNLOAD, RESUME, PREVIEW, UPLOAD = "download", "resume", "preview", "upload"
# The most rows an owner is shown for one link or request: the newest.
SHOWN = 200


class _CountedBody:
    """A response body that counts the bytes it hands the server, and passes
    the server's close on to the body it wraps (which frees its reads)."""

    def __init__(self, body: Iterable[bytes]) -> None:
        self.body = body
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.body:
            self.sent += len(piece)
            yield piece

    def close(self) -> None:
        """Close the wrapped body, as the server closes this one."""
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


def _client() -> tuple[str, str]:
    """The client's address (ProxyFix has put the proxies' word in it) and
    user agent, cut to what a row keeps."""
    return (request.remote_addr or "")[:64], request.user_agent.string[:255]


def _writer(app: Flask, event: Callable[[], AccessEvent]) -> Callable[[], None]:
    """Write ``event()`` in a transaction of its own, within ``app``; a
    failure is only a warning."""

    def write() -> None:
        with app.app_context():
            try:
                db.session.add(event())
                db.session.commit()
            except Exception:  # the log must never fail what it describes
                db.session.rollback()
                app.logger.warning("Could not write an access log row")

    return write


def record_download(
    response: Response, share_id: int, action: str, what: str
) -> Response:
    """Log the answer to a share link's download once it has gone out: the
    bytes it sent, and whether that was all of them."""
    if request.method == "HEAD" or response.status_code not in (200, 206):
        return response
    expected = response.content_length or 0
    # A download's body is bytes (downloads.file_response).
    body = _CountedBody(cast(Iterable[bytes], response.response))
    response.response = body
    address, agent = _client()

    def event() -> AccessEvent:
        return AccessEvent(
            share_id=share_id,
            address=address,
            user_agent=agent,
            action=action,
            what=what[:255],
            bytes=body.sent,
            completed=body.sent >= expected,
        )

    # The app itself, not the proxy: the response closes after the request's
    # context has gone.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    response.call_on_close(_writer(app, event))
    return response


def record_upload(request_id: int, what: str, sent: int, completed: bool) -> None:
    """Log what a guest sent to an upload request in this request: a piece or
    a whole form upload, and whether the file is complete."""
    address, agent = _client()
    _writer(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        lambda: AccessEvent(
            request_id=request_id,
            address=address,
            user_agent=agent,
            action=UPLOAD,
            what=what[:255],
            bytes=sent,
            completed=completed,
        ),
    )()


def events_of(share_id: int | None = None, request_id: int | None = None) -> list:
    """The newest SHOWN rows of a link or a request, newest first."""
    column = AccessEvent.share_id if share_id is not None else AccessEvent.request_id
    wanted = share_id if share_id is not None else request_id
    return list(
        db.session.execute(
            db.select(AccessEvent)
            .where(column == wanted)
            .order_by(AccessEvent.id.desc())
            .limit(SHOWN)
        ).scalars()
    )
