"""Metrics: what ``GET /metrics`` reports (monitoring.py), counted with
prometheus-client.

Requests by route, method and status with their latency, bytes uploaded and
downloaded, database errors by kind, transactions retried after a conflict,
and uploads that failed. Under gunicorn every worker writes its numbers to
PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py makes and empties it) and whichever
worker answers a scrape adds them all up: prometheus-client's multiprocess
mode. In a single process (the development server, tests) the numbers live in
the process.

"""

import functools
import os

from flask import Flask
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
)

import logs

REQUESTS = Counter(
    "lockbox_requests_total",
    "Requests answered, by route, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "lockbox_request_duration_seconds",
    "Time to the end of the answer (a download's whole transfer), by route.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
UPLOADED = Counter("lockbox_uploaded_bytes_total", "File bytes stored.")
DOWNLOADED = Counter("lockbox_downloaded_bytes_total", "File bytes sent.")
DATABASE_ERRORS = Counter(
    "lockbox_database_errors_total",
    "Requests the database failed: unavailable, or still conflicting.",
    ["kind"],
)
RETRIES = Counter(
    "lockbox_transaction_retries_total",
    "Transactions run again after the database undid them for a conflict.",
)
UPLOAD_FAILURES = Counter(
    "lockbox_upload_failures_total", "Uploads that ended without a file."
)
# Every label takes a bounded set of values, whatever the requests: each new
# value is a series kept for good in every worker, so invented methods or
# paths would grow the workers without end. The route of a request no rule
# matched is never its path; a method HTTP does not define, or a status
# outside 100-599, is "other".
UNMATCHED = "<unmatched>"
OTHER = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.lru_cache(maxsize=1024)
def _series(route: str, method: str, status: int | str) -> tuple[Counter, Histogram]:
    """The request counter and the latency histogram of one kind of request.

    Looked up once, not on every request: ``labels()`` checks its values and
    takes the metric's lock each time (docs/benchmarks.md)."""
    return REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method)


def _count(answered: logs.Answered) -> None:
    """Count a request once its answer has been sent (logs.after_each_answer)."""
    route = UNMATCHED if answered.route is None else answered.route
    method = answered.method if answered.method in METHODS else OTHER
    status = answered.status if 100 <= answered.status <= 599 else OTHER
    requests, latency = _series(route, method, status)
    requests.inc()
    latency.observe(answered.seconds)


def registry() -> CollectorRegistry:
    """Every worker's numbers (multiprocess mode), or this process's."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def init_app(app: Flask) -> None:
    """Count every request (monitoring.py serves /metrics)."""
    logs.after_each_answer(app, _count)
