"""One error shape: JSON ``{"message": ...}`` for API clients, a page for browsers."""

from flask import current_app, jsonify, render_template, request
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from models import db


def wants_html() -> bool:
    """True when the client prefers an HTML page to JSON (a browser)."""
    accept = request.accept_mimetypes
    best = accept.best_match(["application/json", "text/html"])
    return best == "text/html" and accept["text/html"] > accept["application/json"]


def error_response(status: int, message: str, headers: dict | None = None):
    """Build the error response for this request, negotiated from ``Accept``."""
    if wants_html():
        body = render_template("error.html", status=status, message=message)
        response = current_app.response_class(body, status=status, mimetype="text/html")
    else:
        response = jsonify(message=message)
        response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class ApiError(HTTPException):
    """An error with a message of our own, raised anywhere inside a request."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(description=message)
        self.code = status
        self.extra_headers = headers or {}


def no_content():
    """An empty 204, without the text/html type Flask gives every response."""
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


def load_or_400(schema, data: dict) -> dict:
    """Validate ``data`` with a marshmallow schema; a 400 naming the first problem."""
    try:
        return schema.load(data, unknown="exclude")
    except ValidationError as error:
        field, messages = next(iter(error.normalized_messages().items()))
        message = messages[0] if isinstance(messages, list) else str(messages)
        raise ApiError(400, f"{field}: {message}") from None


def _message_for(error: HTTPException) -> str:
    """A short, human message for an HTTP error."""
    if error.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return f"Upload too large: the limit is {limit} bytes"
    if error.description and error.description != type(error).description:
        return error.description
    return error.name


def handle_http_error(error: HTTPException):
    """Render any HTTP error (404, 405, 413, our own ApiError...) in our shape."""
    headers = dict(getattr(error, "extra_headers", {}))
    if error.code == 405 and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(error.code or 500, _message_for(error), headers)


def handle_unexpected_error(error: Exception):
    """Log a bug, undo the half-done transaction, and answer 500 without details.

    HTTP errors never reach here: Flask picks the more specific handler above.
    """
    db.session.rollback()
    current_app.logger.exception(
        "Unhandled error on %s %s", request.method, request.path
    )
    return error_response(500, "Internal Server Error")


def handle_database_error(error: OperationalError):
    """The database did not answer: a 503 the client may retry, not a 500."""
    db.session.rollback()
    current_app.logger.error("Database unavailable: %s", error.orig)
    return error_response(503, "Database unavailable", {"Retry-After": "5"})


def init_app(app):
    """Register the error handlers on the app."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(OperationalError, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected_error)
