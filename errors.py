"""One error shape: JSON ``{"message": ...}`` for API clients, a page for browsers."""

from typing import Any

from flask import (
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    render_template,
    request,
)
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from cluster import NotCaughtUp
from formats import human_size
from metrics import DATABASE_ERRORS
from models import db, is_conflict
from schemas import error_schema


def wants_html() -> bool:
    """True when the client prefers an HTML page to JSON (a browser)."""
    accept = request.accept_mimetypes
    best = accept.best_match(["application/json", "text/html"])
    return best == "text/html" and accept["text/html"] > accept["application/json"]


# A browser's error page says what happened in a few words, and what to do
# next. Whoever opened a share link has no account here: their next step is
# the person who sent it.
TITLES = {
    400: "Something in the request is not right",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Not possible here",
    409: "Already there",
    410: "No longer available",
    413: "Too large",
    429: "Too many tries",
    500: "Something went wrong",
    502: "The server is not answering",
    503: "Busy right now",
    504: "The server took too long",
}
NEXT_STEPS = {
    400: "Go back, check what you entered, and try again.",
    401: "Sign in again, then try once more.",
    403: "Sign in with an account that may do this, or ask the account's owner.",
    404: "Check the address, or go back to your files.",
    405: "Go back to your files and use the buttons there.",
    409: "Reload the page to see how things stand now.",
    410: "It has ended or was removed; go back to your files.",
    413: "Free some space by deleting files you no longer need, or ask your "
    "admin for a larger quota. One file may be at most {max_file}.",
    429: "Wait a minute, then try again.",
    500: "Try again in a moment; if it keeps happening, tell your admin and "
    "quote the request id below.",
    503: "Try again in a moment: the server is busy, or being looked after.",
}
LINK_STEPS = {
    401: "This link has a password: ask the person who sent it.",
    404: "Check that the whole link was copied, or ask the person who sent it "
    "for a new one.",
    403: "The link can't be used now: ask the person who sent it.",
    410: "Ask the person who sent you the link for a new one.",
}
# The views a share link's holder sees.
LINK_VIEWS = {"shares.share_page", "shares.share_download"}
# Signing in: a 403 there is an account an administrator disabled.
SIGN_IN_VIEWS = {"auth.login", "auth.login_form", "sso.callback"}
SIGN_IN_STEPS = {403: "Ask your administrator to enable your account again."}


def _error_page(status: int, message: str) -> str:
    """The error page: what happened, what to do next, the way back."""
    for_link = request.endpoint in LINK_VIEWS
    steps = {**NEXT_STEPS, **LINK_STEPS} if for_link else NEXT_STEPS
    if request.endpoint in SIGN_IN_VIEWS:
        steps = {**steps, **SIGN_IN_STEPS}
    step = steps.get(status) or NEXT_STEPS.get(status // 100 * 100, "")
    max_file = human_size(current_app.config.get("MAX_FILE_SIZE") or 0)
    return render_template(
        "error.html",
        status=status,
        title=TITLES.get(status) or HTTP_STATUS_CODES.get(status, "Error"),
        message=message,
        next_step=step.format(max_file=max_file),
        for_link=for_link,
        request_id=g.get("request_id"),
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """Build the error response for this request, negotiated from ``Accept``."""
    if wants_html():
        body = _error_page(status, message)
        response = current_app.response_class(body, status=status, mimetype="text/html")
    else:
        response = jsonify(error_schema.dump({"message": message}))
        response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class ApiError(HTTPException):
    """An error with a message of our own, raised anywhere inside a request.

    ``reason`` is a short word for code that reacts to the error (the sign-in
    page says why a token was refused); the message is for people.
    """

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(description=message)
        self.code = status
        self.reason = reason
        self.extra_headers = headers or {}

    def get_headers(
        self,
        environ: dict[str, Any] | None = None,
        scope: dict[str, Any] | None = None,
    ) -> list[tuple[str, str]]:
        """Werkzeug's headers for the error, and ours."""
        return [*super().get_headers(environ, scope), *self.extra_headers.items()]


def no_content() -> Response:
    """An empty 204, without the text/html type Flask gives every response."""
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


def _message_for(error: HTTPException) -> str:
    """A short, human message for an HTTP error."""
    if isinstance(error, RequestEntityTooLarge):
        limit = request.max_content_length
        return f"Upload too large: the limit is {limit} bytes"
    if error.description and error.description != type(error).description:
        return error.description
    return error.name


def handle_http_error(error: HTTPException) -> Response:
    """Render any HTTP error (404, 405, 413, our own ApiError...) in our shape,
    with the headers it carries (Allow, WWW-Authenticate, Content-Range...)."""
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() != "content-type"  # ours is JSON or HTML, not Werkzeug's
    }
    return error_response(error.code or 500, _message_for(error), headers)


def rollback_quietly() -> None:
    """Undo the request's half-done transaction. When even the rollback fails
    (the connection is unusable: a server gone, a Galera node not ready), the
    session's connections are dropped instead, and the pool replaces them."""
    try:
        db.session.rollback()
    except SQLAlchemyError as error:
        current_app.logger.warning("Rollback failed, connection dropped: %s", error)
        # The request's Session itself: scoped_session does not proxy it.
        db.session().invalidate()


def handle_unexpected_error(error: Exception) -> Response:
    """Log a bug, undo the half-done transaction, and answer 500 without details.

    HTTP errors never reach here: Flask picks the more specific handler above.
    """
    rollback_quietly()
    current_app.logger.exception(
        "Unhandled error on %s %s", request.method, request.path
    )
    return error_response(500, "Internal Server Error")


def database_unavailable(error: Exception) -> bool:
    """True when ``error`` says the database cannot be reached, not that a query
    is wrong: the server is down, restarting, or dropped the connection.

    Drivers differ in how they say so: mysqlclient raises OperationalError, the
    MariaDB Connector raises InterfaceError ("Server has gone away"), and any
    error SQLAlchemy recognised as a lost connection is marked
    ``connection_invalidated``. A pool with no connection free within its
    timeout (every one busy) is an overload the client may retry too. Integrity
    and programming errors stay bugs (500).
    """
    if isinstance(
        error,
        OperationalError | InterfaceError | DisconnectionError | PoolTimeoutError,
    ):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def handle_database_error(
    error: DBAPIError | DisconnectionError | PoolTimeoutError,
) -> Response:
    """The database did not answer: a 503 the client may retry, not a 500."""
    if not database_unavailable(error):
        return handle_unexpected_error(error)
    rollback_quietly()
    retry = {"Retry-After": "1"}
    if isinstance(error, DBAPIError) and is_conflict(error):
        # Still conflicting after retry_on_conflict's attempts: the data is
        # fine, other requests were changing the same rows.
        DATABASE_ERRORS.labels("conflict").inc()
        current_app.logger.warning("Transaction conflict: %s", error.orig)
        return error_response(503, "Busy with a conflicting change; try again", retry)
    DATABASE_ERRORS.labels("unavailable").inc()
    current_app.logger.error(
        "Database unavailable: %s", getattr(error, "orig", None) or error
    )
    return error_response(503, "Database unavailable", {"Retry-After": "5"})


def end_transaction(exception: BaseException | None = None) -> None:
    """At the end of every request and command, before Flask-SQLAlchemy puts
    the session away: close it quietly. A rollback that fails there (a Galera
    node that stopped being ready during the request) would otherwise escape
    the request as an error of the server's; the connection is dropped
    instead. (Closing, unlike a rollback, leaves what was loaded readable.)"""
    try:
        db.session.close()
    except SQLAlchemyError as error:
        current_app.logger.warning("Closing failed, connection dropped: %s", error)
        db.session().invalidate()


def handle_not_caught_up(error: NotCaughtUp) -> Response:
    """A Galera node that did not catch up with the cluster in time (the
    cluster waits for a node that died): a 503 the client may retry, and
    nginx tries the next instance."""
    rollback_quietly()
    DATABASE_ERRORS.labels("unavailable").inc()
    return error_response(503, str(error), {"Retry-After": "5"})


def init_app(app: Flask) -> None:
    """Register the error handlers on the app, and the end of each request's
    transaction (after Flask-SQLAlchemy's own teardown is registered, so that
    it runs first)."""
    app.teardown_appcontext(end_transaction)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(DisconnectionError, handle_database_error)
    app.register_error_handler(PoolTimeoutError, handle_database_error)
    app.register_error_handler(NotCaughtUp, handle_not_caught_up)
    app.register_error_handler(Exception, handle_unexpected_error)
