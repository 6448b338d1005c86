"""gunicorn settings: ``gunicorn -c gunicorn.conf.py 'app:create_app()'``."""

import os

from gunicorn.glogging import Logger

from security import redact

bind = os.environ.get("LOCKBOX_BIND", "127.0.0.1:8000")

# gthread: each request runs in a thread of its own while the worker's main loop
# keeps answering the arbiter's heartbeat, so an upload or download that takes
# longer than `timeout` is not killed (a sync worker would be). Bytes stream in
# and out in 1 MiB pieces, so threads cost little memory even for large files.
worker_class = "gthread"
# Two processes a core: Python holds the GIL while it parses multipart bodies,
# so processes, not threads, are what use several cores.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1)))
threads = int(os.environ.get("GUNICORN_THREADS", 8))
# Heartbeat timeout of a worker's main loop, not a limit on a request's length.
timeout = 60
# Time a worker gets to finish transfers in flight when told to stop.
graceful_timeout = 120
keepalive = 5


class RedactingLogger(Logger):
    """gunicorn's logger with tokens taken out of access and error log lines."""

    def atoms(self, resp, req, environ, request_time):
        """The access log's fields, with ``token=`` values and credentials redacted."""
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: redact(value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }

    def error(self, msg, *args, **kwargs):
        """Error log lines, redacted too (they may quote a request line)."""
        super().error(redact(str(msg) % args if args else str(msg)), **kwargs)


logger_class = RedactingLogger
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
# The usual combined format plus the time taken; the request line is redacted.
access_log_format = '%(h)s - - %(t)s "%(r)s" %(s)s %(B)s "%(f)s" "%(a)s" %(M)sms'
