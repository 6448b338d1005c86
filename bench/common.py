"""What the benchmarks share: their options for the MariaDB server, a scratch
database, a hard time limit, the machine they ran on, and a clean exit."""

import contextlib
import os
import runpy
import shutil
import signal
from pathlib import Path

from harness.mariadb import DatabaseUnreachable, scratch_database

# Variables that would run gunicorn with other than the committed configuration.
CONFIG_OVERRIDES = (
    "GUNICORN_CMD_ARGS",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "LOCKBOX_BIND",
    "FLASK_DEBUG",
)


class SetupError(RuntimeError):
    """The run could not be prepared or did not finish (exit status 2)."""


def add_server_options(parser) -> None:
    """``--server-url`` and ``--driver``: where and how a scratch database is made."""
    parser.add_argument(
        "--server-url",
        default=os.environ.get("LOCKBOX_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
        help="MariaDB server to make the database on (default: %(default)s)",
    )
    parser.add_argument(
        "--driver",
        choices=["mysqlclient", "mariadbconnector"],
        default="mysqlclient",
        help="driver for the database made on --server-url (default: %(default)s)",
    )


@contextlib.contextmanager
def new_database(args, scratch: Path, prefix: str):
    """The URL of a new, empty database, dropped (or deleted) on the way out: a
    SQLite file in ``scratch`` with ``--database-url sqlite``, else a database
    made on ``--server-url`` for ``--driver``."""
    if args.database_url == "sqlite":
        yield f"sqlite:///{scratch / 'lockbox.db'}"
        return
    try:
        with scratch_database(args.server_url, prefix) as url:
            if args.driver == "mariadbconnector":
                url = "mariadb+mariadbconnector://" + url.split("://", 1)[1]
            yield url
    except DatabaseUnreachable as error:
        raise SetupError(
            f"{error}; --server-url for another server, or --database-url sqlite"
        ) from None


@contextlib.contextmanager
def hard_timeout(seconds: int):
    """Raise SetupError in the main thread once ``seconds`` have passed.

    Whatever is registered for clean-up outside this block still runs after it.
    """

    def expire(signum, frame):
        raise SetupError(f"the run took longer than {seconds} s (--timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def machine() -> dict:
    """What the numbers are measured on, and how busy it is at the start."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }


def stop_on_sigterm(signum, frame):
    """Leave through the clean-ups when asked to stop."""
    raise SystemExit(128 + signum)


def gunicorn_settings(environment: dict) -> dict:
    """The worker settings gunicorn.conf.py gives a server's ``environment``
    (a value of None takes the variable out, as LiveServer does), read as
    gunicorn reads the file."""
    saved = dict(os.environ)
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    root = Path(__file__).resolve().parent.parent
    try:
        settings = runpy.run_path(str(root / "gunicorn.conf.py"))
    finally:
        # It makes a metrics directory of its own when none is named.
        made = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        os.environ.clear()
        os.environ.update(saved)
    if made and made != saved.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(made, ignore_errors=True)
    return {name: settings[name] for name in ("worker_class", "workers", "threads")}
