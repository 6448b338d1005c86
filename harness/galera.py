"""A three-node MariaDB Galera cluster on 127.0.0.1, for tests, benchmarks and
``scripts/cluster``.

Each node is a ``MariaDBInstance`` of its own (data directory, socket, ports)
with the wsrep options a real host would have: the Galera provider that
Debian's ``galera-4`` ships, the other nodes' addresses, and ``rsync`` state
transfers. Nothing here replicates or fails over: Galera does both.
"""

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import MySQLdb

from harness.mariadb import SERVER_OPTIONS, MariaDBInstance
from harness.server import free_port

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
# What `mariadbd --wsrep-recover` logs: "WSREP: Recovered position: <uuid>:<seqno>".
RECOVERED_RE = re.compile(r"Recovered position: (\S+:-?\d+)")
CLUSTER_NAME = "lockbox"
# The failure detection deploy/galera/lockbox-galera.cnf recommends, read from
# that file: a dead peer is noticed in about 3 s instead of 5 to 15.
TUNED_FILE = Path(__file__).resolve().parent.parent / "deploy/galera/lockbox-galera.cnf"
TUNED_RE = re.compile(r"^\s*wsrep_provider_options\s*=\s*\"([^\"]*)\"", re.M)


def tuned_failure_detection() -> list[str]:
    """The evs.* settings of the shipped drop-in option file."""
    found = TUNED_RE.search(TUNED_FILE.read_text())
    if found is None:
        raise RuntimeError(f"no wsrep_provider_options line in {TUNED_FILE}")
    options = [option.strip() for option in found[1].split(";") if option.strip()]
    return [option for option in options if option.startswith("evs.")]


TUNED_FAILURE_DETECTION = tuned_failure_detection()


def galera_available() -> str | None:
    """Why a Galera cluster cannot run here, or None when it can."""
    if not Path(PROVIDER).exists():
        return f"{PROVIDER} is missing (Debian's galera-4 package)"
    if shutil.which("rsync") is None:
        return "rsync is missing (Galera's state transfer uses it)"
    return None


class GaleraNode(MariaDBInstance):
    """One node: a MariaDB server with wsrep on, joining the cluster's peers."""

    def __init__(self, name: str, base_dir: Path, peers: list[str], tuned: bool = True):
        """``tuned``: with the failure-detection settings Lockbox recommends
        (deploy/galera/); without, Galera's stock ones."""
        super().__init__(base_dir)
        self.name = name
        self.tuned = tuned
        self.galera_port = free_port()
        self.ist_port = free_port()
        self.sst_port = free_port()
        self.peers = peers
        self.bootstrap = False
        self.start_position: str | None = None

    @property
    def address(self) -> str:
        """Where the other nodes reach this one's group communication."""
        return f"127.0.0.1:{self.galera_port}"

    def server_options(self) -> list[str]:
        """Galera's settings, as a real node's option file would hold them."""
        provider_options = ";".join(
            [
                f"gmcast.listen_addr=tcp://{self.address}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                # Enough write sets kept for a node that was away a while to
                # catch up incrementally (IST) instead of copying everything.
                "gcache.size=256M",
                *(TUNED_FAILURE_DETECTION if self.tuned else ()),
            ]
        )
        options = [
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            f"--wsrep-cluster-name={CLUSTER_NAME}",
            f"--wsrep-cluster-address=gcomm://{','.join(self.peers)}",
            f"--wsrep-node-name={self.name}",
            f"--wsrep-node-address={self.address}",
            f"--wsrep-provider-options={provider_options}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            # Chunk rows are up to 4 MiB, several to a transaction.
            "--max-allowed-packet=64M",
        ]
        if self.bootstrap:
            options.append("--wsrep-new-cluster")
        if self.start_position:
            options.append(f"--wsrep-start-position={self.start_position}")
        return options

    def status(self, name: str) -> str | None:
        """A wsrep status variable of this node, or None when it does not answer."""
        row = self.query_one("SHOW GLOBAL STATUS LIKE %s", (name,))
        return row[1] if row else None

    def start(self, timeout: float = 60) -> None:
        """Start the node. As root, its data directory first goes to nobody:
        the rsync daemon that receives a state transfer drops to nobody when
        started by root and must be able to write there (MDEV-40688);
        mariadbd, running as root, reads and writes it all the same."""
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for directory, _, names in os.walk(self.datadir):
                for path in [directory, *(os.path.join(directory, n) for n in names)]:
                    os.chown(path, nobody.pw_uid, nobody.pw_gid)
        self.start_position = self.recovered_position()
        super().start(timeout)

    def recovered_position(self) -> str | None:
        """After a crash (grastate.dat says seqno -1), the last position InnoDB
        committed, found by ``mariadbd --wsrep-recover`` as Debian's
        galera_recovery does: starting from it, the node catches up by IST
        instead of copying everything again (SST)."""
        grastate = self.datadir / "grastate.dat"
        if not grastate.exists() or "seqno:   -1" not in grastate.read_text():
            return None
        recovery_log = self.base_dir / "recovery.log"
        subprocess.run(
            [
                self.server_program,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--log-error={recovery_log}",
                "--wsrep-recover",
                "--skip-networking",
                *self._user_option(),
                *SERVER_OPTIONS,
                f"--socket={self.base_dir / 'recovery.sock'}",
                f"--pid-file={self.base_dir / 'recovery.pid'}",
                *self.server_options(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        found = RECOVERED_RE.search(recovery_log.read_text(errors="replace"))
        return found[1] if found else None

    def set_isolated(self, isolated: bool) -> None:
        """Cut the node off from the others' group communication (Galera's
        gmcast.isolate), as a network partition would, or join it again."""
        connection = MySQLdb.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            connection.cursor().execute(
                "SET GLOBAL wsrep_provider_options = %s",
                (f"gmcast.isolate={int(isolated)}",),
            )
        finally:
            connection.close()

    def synced(self) -> bool:
        """In the primary component and caught up."""
        return self.status("wsrep_local_state_comment") == "Synced"

    def wait_synced(self, timeout: float = 120) -> None:
        """Until the node is Synced; RuntimeError with its log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            if self.synced():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not Synced in {timeout} s:\n{self.log_tail()}")


class GaleraCluster:
    """Three nodes on loopback: started, stopped and broken on purpose."""

    def __init__(
        self, base_dir: str | Path | None = None, size: int = 3, tuned: bool = True
    ):
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="lockbox-galera-"))
        self.nodes: list[GaleraNode] = []
        peers: list[str] = []
        for number in range(1, size + 1):
            node = GaleraNode(
                f"node{number}", self.base_dir / f"node{number}", peers, tuned
            )
            self.nodes.append(node)
        peers.extend(node.address for node in self.nodes)

    def start(self) -> None:
        """Bootstrap the first node, then join the others (state transfer)."""
        first, *others = self.nodes
        for node in self.nodes:
            node.install()
        first.bootstrap = True
        first.start()
        first.wait_synced()
        first.bootstrap = False
        for node in others:
            node.start(timeout=180)
        for node in others:
            node.wait_synced()

    def size(self) -> int:
        """How many nodes the first live node sees in its primary component."""
        for node in self.nodes:
            if node.running:
                value = node.status("wsrep_cluster_size")
                if value is not None:
                    return int(value)
        return 0

    def stop(self) -> None:
        """Stop every node cleanly."""
        for node in reversed(self.nodes):
            node.stop()

    def cleanup(self) -> None:
        """Kill every node and delete all their files."""
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup()


def root_url(node: MariaDBInstance) -> str:
    """A SQLAlchemy URL for ``node``'s root account (mysqlclient)."""
    return f"mysql://root@127.0.0.1:{node.port}"
