"""Operations: liveness and health checks, request ids, request logging, JSON logs."""

import logging
import re
import time
import uuid

from flask import Blueprint, current_app, g, has_request_context, jsonify, request
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.exc import SQLAlchemyError

from models import db
from security import RedactingFilter

bp = Blueprint("monitoring", __name__)

# A request id a client or proxy may send: short, and safe to echo and log.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"


@bp.get("/livez")
def livez():
    """Liveness only: the process answers requests. No token, no database.

    For a supervisor deciding whether to restart the process: a database outage
    must not make it restart every instance; that is what /healthz tells.
    """
    return jsonify(status="ok")


@bp.get("/healthz")
def healthz():
    """Liveness and database reachability, for load balancers; no token needed."""
    try:
        db.session.execute(db.text("SELECT 1"))
    except SQLAlchemyError as error:
        db.session.rollback()
        current_app.logger.error("Health check: database unavailable: %s", error)
        body = {
            "status": "unavailable",
            "database": "unavailable",
            "message": "Database unavailable",
        }
        return jsonify(body), 503
    return jsonify(status="ok", database="ok")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every log record (``-`` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``record.request_id``; never drop the record."""
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def _start_request():
    """Take the client's X-Request-ID when it is sane, or make one."""
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish_request(response):
    """Echo the request id and log one line per request (path without query)."""
    response.headers["X-Request-ID"] = g.get("request_id", "-")
    elapsed = (
        time.perf_counter() - g.get("request_started", time.perf_counter())
    ) * 1000
    current_app.logger.info(
        "%s %s %s %.1fms", request.method, request.path, response.status_code, elapsed
    )
    return response


def _configure_logging(app) -> None:
    """One handler on the app's logger: text, or JSON when LOG_FORMAT=json."""
    handler = logging.StreamHandler()
    if app.config.get("LOG_FORMAT") == "json":
        handler.setFormatter(JsonFormatter(JSON_FIELDS))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    app.logger.handlers = [handler]
    app.logger.setLevel(logging.DEBUG if app.debug else logging.INFO)
    # Records also reach pytest's capture and any root handler an operator adds.
    app.logger.propagate = True


def init_app(app):
    """Register the liveness and health checks, request ids and logging."""
    app.register_blueprint(bp)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    _configure_logging(app)
