"""Real servers on 127.0.0.1: the app under gunicorn, and nginx in front of it.

The one launcher the tests and the benchmarks use.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int, field: str) -> int:
    """A size in bytes from /proc/<pid>/status (VmRSS, VmHWM...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class LiveServer:
    """gunicorn serving ``app:create_app()`` with the given environment."""

    def __init__(
        self,
        env: dict,
        workers: int = 1,
        extra_args=(),
        threads: int = 4,
        shipped=False,
        target="app:create_app()",
    ):
        """``shipped``: run gunicorn.conf.py's own worker settings, unchanged.

        ``target``: another WSGI app to serve the same way (the benchmark's
        baselines, bench/bare_app.py and bench/peer_app.py).
        """
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A value of None takes the variable out of the server's environment.
        # Limits kept in a shared store (Redis) are this server's own, unless
        # the caller says otherwise: other servers' counts never reach it.
        self.env = {
            name: value
            for name, value in {
                "RATELIMIT_KEY_PREFIX": f"server-{uuid.uuid4().hex[:12]}",
                **os.environ,
                **env,
            }.items()
            if value is not None
        }
        # gunicorn reads ./gunicorn.conf.py (the shipped settings) by itself;
        # the command line overrides some of them for tests.
        overrides = [
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--timeout",
            "120",
        ]
        self.args = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            *([] if shipped else overrides),
            *extra_args,
            target,
        ]
        self.process = None
        self.output = ""
        self._chunks: list[bytes] = []
        self._reader = None

    def _read_output(self):
        """Collect gunicorn's output as it comes, so a full pipe never blocks it."""
        for line in self.process.stdout:
            self._chunks.append(line)

    def output_so_far(self) -> str:
        """What gunicorn and the app have printed up to now."""
        return b"".join(self._chunks).decode(errors="replace")

    def __enter__(self):
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: workers left behind can be found and stopped.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._collect()
                raise RuntimeError(f"gunicorn exited early:\n{self.output}")
            try:
                requests.get(self.url + "/login", timeout=2)
                return self
            except (requests.ConnectionError, requests.Timeout):
                # Bound but no worker booted yet (several workers boot slowly).
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("gunicorn did not answer within 30 s")

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        self._collect()

    def _collect(self):
        """Stop any worker the master left behind, keep the text in ``output``."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reader.join(timeout=20)
        if not self._reader.is_alive():
            self.process.stdout.close()
        self.output = self.output_so_far()

    def cpu_seconds(self) -> float:
        """CPU time gunicorn and its workers have used so far (from /proc)."""
        ticks = 0
        for pid in [self.process.pid, *self.worker_pids()]:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue  # a worker that just exited
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def worker_pids(self) -> list[int]:
        """The pids of gunicorn's worker processes."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


NGINX_SITE = """\
worker_processes 1;
daemon off;
user root;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream lockbox {{
{servers}
        keepalive 16;
    }}
    log_format lockbox '$remote_addr - [$time_local] "$request_method $uri" '
                       '$status $body_bytes_sent $request_time $request_id';
    access_log {dir}/access.log lockbox;
    server {{
        listen 127.0.0.1:{port};
        include {root}/deploy/nginx/lockbox-proxy.conf;
    }}
}}
"""


class Nginx:
    """nginx on 127.0.0.1 in front of app servers, with the shipped proxy settings
    (deploy/nginx/lockbox-proxy.conf) included unchanged."""

    def __init__(self, directory: Path, upstream_ports: list[int]):
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;"
            for port in upstream_ports
        )
        self.config = directory / "nginx.conf"
        self.config.write_text(
            NGINX_SITE.format(dir=directory, servers=servers, port=self.port, root=ROOT)
        )
        self.process = None

    def __enter__(self):
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("nginx did not listen within 15 s")

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def error_log(self) -> str:
        """What nginx wrote to its error log."""
        path = self.dir / "error.log"
        return path.read_text() if path.exists() else ""
