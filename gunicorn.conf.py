"""gunicorn settings: ``gunicorn -c gunicorn.conf.py 'app:create_app()'``.

gunicorn is never exposed directly: nginx (or another proxy that buffers
requests) stands in front, see docs/deploy.md.
"""

import json
import os
import shutil
import tempfile

from dotenv import load_dotenv

# The same .env the app reads (create_app), for the settings read here.
load_dotenv(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".env"))

# GET /metrics adds up every worker's numbers from files in one directory
# (prometheus-client's multiprocess mode). prometheus-client decides where a
# process keeps its numbers when it is first imported, so the directory is
# named here, before anything imports it, and before the workers are forked,
# so that each of them inherits it. One this server makes is its own: emptied
# at the start, removed at the stop (an operator's own is only emptied).
METRICS_DIR_MADE = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if METRICS_DIR_MADE:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lockbox-metrics-")

from gunicorn import util  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402

from config import (  # noqa: E402
    DEFAULT_LIMIT_STORAGE,
    ConfigError,
    env,
    limit_storage_is_shared,
)
from logs import GunicornLogger  # noqa: E402

bind = os.environ.get("LOCKBOX_BIND", "127.0.0.1:8000")

# Sign-in limits are counted per process unless RATELIMIT_STORAGE_URI names a
# shared store (Redis): with N workers counting apart, an attacker would get N
# times the documented number of guesses.
try:
    LIMITS_SHARED = limit_storage_is_shared(
        env("RATELIMIT_STORAGE_URI") or DEFAULT_LIMIT_STORAGE
    )
except ConfigError as error:
    raise SystemExit(f"Lockbox cannot start: {error}") from None

# gthread: each request runs in a thread of its own while the worker's main loop
# keeps answering the arbiter's heartbeat, so an upload or download that takes
# longer than `timeout` is not killed (a sync worker would be). Bytes stream in
# and out in 1 MiB pieces, so threads cost little memory even for large files.
worker_class = "gthread"
# Two processes a core: Python holds the GIL while it parses multipart bodies,
# so processes, not threads, are what use several cores. One process only while
# sign-in limits live in its memory (see on_starting).
workers = int(
    os.environ.get("WEB_CONCURRENCY")
    or (2 * (os.cpu_count() or 1) if LIMITS_SHARED else 1)
)
threads = int(os.environ.get("GUNICORN_THREADS") or 8)
# Heartbeat timeout of a worker's main loop, not a limit on a request's length.
timeout = 60
# Time a worker gets to finish transfers in flight when told to stop.
graceful_timeout = 120
keepalive = 5


def child_exit(server, worker):
    """A worker that exits leaves its counts behind, for the totals."""
    multiprocess.mark_process_dead(worker.pid)


def on_starting(server):
    """Refuse to start several workers that would each count sign-in failures."""
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))
    server.log.info("Metrics of every worker: %s", metrics_dir)
    if server.cfg.workers > 1 and not LIMITS_SHARED:
        raise SystemExit(
            f"Lockbox cannot start {server.cfg.workers} workers with sign-in limits "
            "counted in each worker's memory: every worker would allow the whole "
            "limit. Set RATELIMIT_STORAGE_URI=redis://127.0.0.1:6379 (any shared "
            "store), or run one worker (WEB_CONCURRENCY=1)."
        )
    if not LIMITS_SHARED:
        server.log.warning(
            "Sign-in limits are counted in memory: one worker. Set "
            "RATELIMIT_STORAGE_URI=redis://... to run more."
        )


def on_exit(server):
    """The metrics directory this server made goes with it."""
    if METRICS_DIR_MADE:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's answer to a request it cannot hand to the app (a request line
    or header over its limits, broken syntax), in the app's one error shape,
    ``{"message": ...}``, instead of gunicorn's HTML page."""
    body = json.dumps({"message": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


# gunicorn has no setting for its error bodies; its workers look this function up
# on every error, so replacing it here reaches every worker.
util.write_error = write_json_error


# The app logs each request once, with its request id (logs.py); gunicorn's own
# access log would be a second line without it. Its error log (worker starts,
# invalid requests) goes through the app's redaction.
logger_class = GunicornLogger
accesslog = None
