"""The metrics token credential: METRICS_TOKEN, which alone opens
``GET /metrics`` (monitoring.py), compared in constant time. Unset, metrics
are off and the route answers 404 to everybody. It travels only as
``Authorization: Bearer``, whose credentials logs.py hides whatever they are:
an operator's own secret has no shape of its own to register."""

import hmac

from flask import current_app
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import NotFound, Unauthorized


def check(given: str) -> None:
    """Return when ``given`` is the metrics token; 404 while metrics are off,
    401 otherwise."""
    expected = current_app.config.get("METRICS_TOKEN")
    if not expected:
        raise NotFound()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(
            "Metrics need the metrics token", www_authenticate=WWWAuthenticate("bearer")
        )
