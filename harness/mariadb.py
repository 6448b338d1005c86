"""MariaDB for tests and benchmarks: a throwaway database on a running server
(``scratch_database``), or a private server for tests that stop and restart it.

It has its own data directory, socket, pid file and port, reads no option file
(``--no-defaults``), and never touches a server the machine already runs.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import MySQLdb
import sqlalchemy as sa

from harness.server import free_port

# Where Debian, Fedora and the MariaDB tarballs put the server's programs.
SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/usr/local/bin"]
)
# Small and quick: a test server holds a few MiB and starts in about a second.
SERVER_OPTIONS = [
    "--skip-log-bin",
    "--performance-schema=OFF",
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-data-file-path=ibdata1:12M:autoextend",
]


class DatabaseUnreachable(RuntimeError):
    """The MariaDB server that should hold a scratch database does not answer."""


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str):
    """The URL of a new, empty database on ``server_url``, dropped on the way out.

    Raises DatabaseUnreachable when the server does not answer.
    """
    server_url = server_url.rstrip("/")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            connection.execute(
                sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            )
    except sa.exc.OperationalError as error:
        engine.dispose()
        raise DatabaseUnreachable(
            f"MariaDB is not reachable at {server_url}: {error.orig}"
        ) from None
    try:
        yield f"{server_url}/{name}"
    finally:
        with engine.connect() as connection:
            # Never wait long for a connection left open somewhere.
            connection.execute(sa.text("SET SESSION lock_wait_timeout = 20"))
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        engine.dispose()


def server_programs() -> tuple[str, str] | None:
    """Paths of ``mariadb-install-db`` and ``mariadbd``, or None when missing."""
    install = shutil.which("mariadb-install-db", path=SEARCH_PATH)
    server = shutil.which("mariadbd", path=SEARCH_PATH)
    return (install, server) if install and server else None


class MariaDBInstance:
    """``mariadbd`` on 127.0.0.1 with a throwaway data directory; root, no password.

    ``start()`` after ``stop()`` or ``kill()`` brings the same server back: same
    data directory, same port. The context manager installs and starts it, and
    afterwards kills it and deletes everything it wrote.
    """

    def __init__(self, base_dir: str | Path | None = None):
        programs = server_programs()
        if programs is None:
            raise FileNotFoundError("mariadb-install-db or mariadbd is not installed")
        self.install_program, self.server_program = programs
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="lockbox-mariadb-"))
        self.datadir = self.base_dir / "data"
        # Short paths: a Unix socket's path must fit in 108 bytes.
        self.socket = self.base_dir / "mariadb.sock"
        self.pid_file = self.base_dir / "mariadb.pid"
        self.log_file = self.base_dir / "error.log"
        self.port = free_port()
        self.url = f"mysql://root@127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def server_options(self) -> list[str]:
        """Options of this kind of server beyond SERVER_OPTIONS (a Galera
        node's, say)."""
        return []

    def _user_option(self) -> list[str]:
        """mariadbd refuses to run as root unless told to."""
        return ["--user=root"] if os.geteuid() == 0 else []

    def install(self) -> None:
        """Create the system tables in the data directory (once)."""
        if (self.datadir / "mysql").is_dir():
            return
        completed = subprocess.run(
            [
                self.install_program,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *self._user_option(),
                *SERVER_OPTIONS,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
        if completed.returncode != 0:
            output = completed.stdout.decode(errors="replace")
            raise RuntimeError(f"mariadb-install-db failed:\n{output}")

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it accepts connections."""
        if self.running:
            return
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.server_program,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    f"--socket={self.socket}",
                    f"--pid-file={self.pid_file}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    "--skip-networking=0",
                    f"--log-error={self.log_file}",
                    *self._user_option(),
                    *SERVER_OPTIONS,
                    *self.server_options(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited early:\n{self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"mariadbd not ready within {timeout} s:\n{self.log_tail()}")

    def query_one(self, sql: str, params=()) -> tuple | None:
        """The first row of ``sql`` over TCP as root; None when the server does
        not answer or the query fails."""
        try:
            connection = MySQLdb.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=2
            )
        except MySQLdb.OperationalError:
            return None
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            return cursor.fetchone()
        except MySQLdb.Error:
            return None
        finally:
            connection.close()

    def ping(self) -> bool:
        """True when the server answers a query over TCP."""
        return self.query_one("SELECT 1") is not None

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM); a kill if it takes longer than ``timeout``."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 30) -> None:
        """A hard stop (SIGKILL), as a crash or the OOM killer would do it."""
        self._signal(signal.SIGKILL, timeout)

    def _signal(self, signum: int, timeout: float) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's error log."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no error log)"
        return "\n".join(text.splitlines()[-lines:])

    def cleanup(self) -> None:
        """Kill the server and delete its data directory and files."""
        self.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self):
        try:
            self.install()
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup()
