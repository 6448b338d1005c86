"""Lockbox on a cluster, on 127.0.0.1: three Galera nodes, Redis, two gunicorn
instances of the app each on its own node, and nginx balancing the instances.

The one topology ``scripts/cluster`` starts for people and tests/cluster/
starts for the tests. Every process writes to files under one directory and
runs in a session of its own, so the topology outlives the command that
started it (``scripts/cluster up``) until ``down`` stops it from its state
file. docs/deploy.md describes the same topology on real hosts.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import MySQLdb
import requests

from harness.galera import GaleraCluster
from harness.mariadb import MariaDBInstance
from harness.server import ROOT, Nginx, free_port

DATABASE = "lockbox"
DB_USER = "lockbox"
# Redis for the sign-in limits, which every instance must share.
REDIS_URL = "redis://127.0.0.1:6379"
STATE_FILE = "state.json"
FIRST_USER = "admin"


def redis_is_up() -> bool:
    """Whether the machine's Redis answers on 6379."""
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:  # noqa: BLE001 - any failure means "not up"
        return False


class AppInstance:
    """gunicorn with the shipped gunicorn.conf.py, its output in a file."""

    def __init__(self, name: str, base_dir: Path, env: dict):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = base_dir / f"{name}.log"
        self.env = {
            **os.environ,
            **env,
            "LOCKBOX_BIND": f"127.0.0.1:{self.port}",
            "PROMETHEUS_MULTIPROC_DIR": str(base_dir / f"{name}-metrics"),
        }
        self.pid: int | None = None
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        """Start gunicorn and wait until it answers."""
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "app:create_app()"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.process, self.pid = process, process.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()[-3000:]}")
            try:
                requests.get(self.url + "/livez", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer in {timeout} s")

    def kill(self) -> None:
        """SIGKILL the instance and its workers, as a crash would."""
        if self.pid is not None:
            with_group(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """A graceful stop of the instance and its workers."""
        if self.pid is not None:
            with_group(self.pid, signal.SIGTERM)

    def output(self) -> str:
        """What gunicorn and the app printed."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def with_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the process group ``pid`` leads; fine if it is gone."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


class Topology:
    """The whole cluster, started in ``base_dir``."""

    def __init__(
        self,
        base_dir: Path,
        instances: int = 2,
        env: dict | None = None,
        single: bool = False,
        tuned: bool = True,
    ):
        """``single``: one plain MariaDB server instead of the Galera cluster
        (the same topology otherwise, for comparison); ``tuned``: the cluster
        with deploy/galera/'s failure detection, else Galera's stock one."""
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.galera = (
            None if single else GaleraCluster(self.base_dir / "galera", tuned=tuned)
        )
        self.single = MariaDBInstance(self.base_dir / "mariadb") if single else None
        self.db_password = secrets.token_urlsafe(18)
        self.secret_key = secrets.token_urlsafe(48)
        self.metrics_token = secrets.token_urlsafe(24)
        self.limit_prefix = f"cluster-{secrets.token_hex(6)}"
        self.extra_env = env or {}
        self.apps: list[AppInstance] = []
        self.instance_count = instances
        self.nginx: Nginx | None = None
        self.first_password = secrets.token_urlsafe(12)

    def database_url(self, node, driver: str = "mariadb+mariadbconnector") -> str:
        """The app's URL for one node (MariaDB Connector: the fast driver)."""
        return (
            f"{driver}://{DB_USER}:{self.db_password}@127.0.0.1:{node.port}/{DATABASE}"
        )

    def app_env(self, node) -> dict:
        """What each instance runs with: its node, and what they all share."""
        return {
            "DATABASE_URL": self.database_url(node),
            "SECRET_KEY": self.secret_key,
            "RATELIMIT_STORAGE_URI": REDIS_URL,
            # Every instance of this site shares its counts, and no other's.
            "RATELIMIT_KEY_PREFIX": self.limit_prefix,
            "TRUSTED_PROXIES": "1",
            "METRICS_TOKEN": self.metrics_token,
            "WEB_CONCURRENCY": "2",
            **self.extra_env,
        }

    @property
    def nodes(self) -> list:
        """The database servers: the Galera nodes, or the single server."""
        return self.galera.nodes if self.galera else [self.single]

    def up(self) -> None:
        """Start everything, in order; on failure, stop what started."""
        if not redis_is_up():
            raise RuntimeError(f"Redis does not answer at {REDIS_URL}")
        try:
            if self.galera:
                self.galera.start()
            else:
                self.single.install()
                self.single.start()
            self._create_database()
            self._migrate_and_add_the_first_user()
            for number in range(self.instance_count):
                node = self.nodes[number % len(self.nodes)]
                app = AppInstance(f"app{number + 1}", self.base_dir, self.app_env(node))
                app.start()
                self.apps.append(app)
            (self.base_dir / "nginx").mkdir(exist_ok=True)
            self.nginx = Nginx(self.base_dir / "nginx", [app.port for app in self.apps])
            self.nginx.__enter__()
            self.save_state()
        except BaseException:
            self.down()
            raise

    def _create_database(self) -> None:
        """The database and its account, as a DBA would make them (once, on
        the first node: Galera replicates both)."""
        node = self.nodes[0]
        connection = MySQLdb.connect(host="127.0.0.1", port=node.port, user="root")
        try:
            cursor = connection.cursor()
            cursor.execute(
                f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4"
            )
            cursor.execute(
                f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY %s",
                (self.db_password,),
            )
            cursor.execute(f"GRANT ALL ON `{DATABASE}`.* TO '{DB_USER}'@'127.0.0.1'")
        finally:
            connection.close()

    def flask(self, *args: str, node=None, stdin: str | None = None) -> str:
        """Run a ``flask --app app`` command against a node (the first one)."""
        env = {**os.environ, **self.app_env(node or self.nodes[0])}
        completed = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args],
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed:\n{completed.stderr}")
        return completed.stdout

    def _migrate_and_add_the_first_user(self) -> None:
        self.flask("init-db")
        self.flask("users", "create", FIRST_USER, stdin=self.first_password + "\n")

    def save_state(self) -> None:
        """Everything ``down`` and ``status`` need, in STATE_FILE."""
        state = {
            "url": self.nginx.url,
            "first_user": [FIRST_USER, self.first_password],
            "metrics_token": self.metrics_token,
            "nodes": [
                {
                    "name": getattr(node, "name", "mariadb"),
                    "port": node.port,
                    "pid": node.process.pid if node.process else None,
                }
                for node in self.nodes
            ],
            "apps": [
                {"name": app.name, "url": app.url, "pid": app.pid} for app in self.apps
            ],
            "nginx_pid": self.nginx.process.pid,
        }
        (self.base_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def down(self) -> None:
        """Stop everything this object started, and delete the files."""
        if self.nginx is not None and self.nginx.process is not None:
            self.nginx.__exit__()
        for app in self.apps:
            app.kill()
        if self.galera:
            self.galera.cleanup()
        else:
            self.single.cleanup()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()


def down_from_state(base_dir: Path) -> bool:
    """Stop a topology another process started (``scripts/cluster down``)."""
    state_file = base_dir / STATE_FILE
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    with_group(state["nginx_pid"], signal.SIGTERM)
    for app in state["apps"]:
        with_group(app["pid"], signal.SIGKILL)
    for node in state["nodes"]:
        if node["pid"]:
            try:
                os.kill(node["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.5)
    shutil.rmtree(base_dir, ignore_errors=True)
    return True
