"""What encryption at rest costs: uploads and downloads sealed against the same
without a storage key, side by side in one run.

    .venv/bin/python bench/encryption.py                    # 100 MiB and 1 GiB
    .venv/bin/python bench/encryption.py --sizes 100 --rounds 3

For each database (MariaDB through each driver, and SQLite) two apps run
under gunicorn at once, each on its own new database: one with a storage key
(every chunk sealed with AES-256-GCM), one without. Each round sends the same
file through both as the upload form does, then downloads it, one app after
the other (which one goes first alternates), on a quiet database (InnoDB's
purge and flushing done): a busy spell on this shared machine slows both
sides of a ratio alike. The worker's resident memory is sampled during every
transfer against its idle size.

The targets (the encryption issue): sealed throughput at least 90 % of the
unsealed, upload and download, for both drivers; worker memory unchanged
(the sealed worker grows no more than the unsealed one, within 8 MiB).
Results go to bench/results/encryption.json and print as a Markdown table.
"""

import argparse
import base64
import hashlib
import json
import secrets
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from bench.run import (  # noqa: E402
    MIB,
    WorkerWatch,
    delete_files,
    download,
    expected_sha256,
    prepare_app_database,
    random_blocks,
    sign_in,
    upload,
    wait_for_quiet_database,
)
from harness.server import LiveServer, proc_status  # noqa: E402

DATABASES = {
    "mysqlclient": "mysql",
    "mariadbconnector": "mariadb+mariadbconnector",
    "sqlite": "sqlite",
}
# The targets: sealed MiB/s over unsealed, and how much more the sealed
# worker may grow than the unsealed one.
THROUGHPUT_TARGET = 0.90
MEMORY_ALLOWANCE = 8 * MIB


class App:
    """One app under gunicorn (one worker), with or without a storage key,
    signed in: its transfers timed with the worker watched."""

    def __init__(self, url: str, sealed: bool, temp_dir: str):
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.sealed = sealed
        self.env = {
            "SECRET_KEY": "bench-" + uuid.uuid4().hex + uuid.uuid4().hex,
            "DATABASE_URL": url,
            "MAX_CONTENT_LENGTH": str(2048 * MIB),
            "TMPDIR": temp_dir,
            # Empty, not absent: a .env next to the app cannot fill it in.
            "STORAGE_KEYS": f"*bench:{key}" if sealed else "",
            "STORAGE_KEYS_FILE": "",
        }
        prepare_app_database(url, self.env)
        self.server = LiveServer(self.env)
        self.temp_dir = temp_dir
        self.upload_s: list[float] = []
        self.download_s: list[float] = []
        self.peak = 0

    def __enter__(self):
        self.server.__enter__()
        self.token = sign_in(self.server)
        [self.worker] = self.server.worker_pids()
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)

    def warm_up(self, blocks):
        """A small round trip, so the worker's connections are open before
        its idle size is read."""
        _, body = upload(self.server.port, self.token, blocks, MIB)
        download(self.server.port, self.token, body["id"])
        delete_files(self.server, self.token, [body["id"]], check=True)
        self.idle = proc_status(self.worker, "VmRSS")

    def turn(self, blocks, size, quiet):
        """One upload and one download, timed and watched; checked untimed."""
        port = self.server.port
        quiet()
        with WorkerWatch(self.worker, self.temp_dir) as watch:
            seconds, body = upload(port, self.token, blocks, size)
        self.upload_s.append(seconds)
        self.peak = max(self.peak, watch.peak_rss)
        if body["sha256"] != expected_sha256(blocks, size):
            raise RuntimeError("stored sha256 differs from the bytes sent")
        quiet()
        with WorkerWatch(self.worker, self.temp_dir) as watch:
            seconds, _ = download(port, self.token, body["id"])
        self.download_s.append(seconds)
        self.peak = max(self.peak, watch.peak_rss)
        _, sha = download(port, self.token, body["id"], hashlib.sha256())
        if sha != body["sha256"]:
            raise RuntimeError("downloaded bytes differ from the upload")
        delete_files(self.server, self.token, [body["id"]], check=True)

    def figures(self, size):
        """Median MiB/s each way, and the worker's largest growth (MiB)."""
        return {
            "upload_mib_s": size / MIB / statistics.median(self.upload_s),
            "download_mib_s": size / MIB / statistics.median(self.download_s),
            "rss_growth_mib": (self.peak - self.idle) / MIB,
        }


def database_url(args, kind, name, temp_dir):
    """A new database for one app: on --mysql for a driver, a file for SQLite."""
    if kind == "sqlite":
        return f"sqlite:///{Path(temp_dir) / name}.db"
    import MySQLdb

    parts = urlsplit("mysql://" + args.mysql)
    admin = MySQLdb.connect(
        host=parts.hostname, port=parts.port or 3306, user=parts.username or "root"
    )
    admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    admin.close()
    return f"{DATABASES[kind]}://{args.mysql}/{name}"


def drop_databases(args, names):
    """Drop the MariaDB databases this run made."""
    import MySQLdb

    parts = urlsplit("mysql://" + args.mysql)
    admin = MySQLdb.connect(
        host=parts.hostname, port=parts.port or 3306, user=parts.username or "root"
    )
    for name in names:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


def measure(args, kind, size, blocks, temp_dir, made):
    """Both apps for one database kind and size, turn about; the row."""
    names = [f"lockbox_seal_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    if kind != "sqlite":
        made.extend(names)
    parts = urlsplit("mysql://" + args.mysql)
    server = (parts.hostname, parts.port or 3306, parts.username or "root", None)

    def quiet():
        if kind != "sqlite":
            wait_for_quiet_database(server)

    sealed = App(database_url(args, kind, names[0], temp_dir), True, temp_dir)
    plain = App(database_url(args, kind, names[1], temp_dir), False, temp_dir)
    with sealed, plain:
        sealed.warm_up(blocks)
        plain.warm_up(blocks)
        for round_number in range(
            args.rounds if size <= 100 * MIB else args.big_rounds
        ):
            first, second = (sealed, plain) if round_number % 2 else (plain, sealed)
            first.turn(blocks, size, quiet)
            second.turn(blocks, size, quiet)
    on, off = sealed.figures(size), plain.figures(size)
    return {
        "database": kind,
        "size_mib": size // MIB,
        "sealed": on,
        "plain": off,
        "upload_ratio": on["upload_mib_s"] / off["upload_mib_s"],
        "download_ratio": on["download_mib_s"] / off["download_mib_s"],
        "extra_rss_mib": on["rss_growth_mib"] - off["rss_growth_mib"],
    }


def report(rows):
    """The Markdown table, with each target met or missed."""
    lines = [
        "| database | size | upload sealed / plain MiB/s | ratio | download sealed "
        "/ plain MiB/s | ratio | worker growth sealed / plain MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        on, off = row["sealed"], row["plain"]
        lines.append(
            f"| {row['database']} | {row['size_mib']} MiB "
            f"| {on['upload_mib_s']:.0f} / {off['upload_mib_s']:.0f} "
            f"| {row['upload_ratio']:.0%} "
            f"| {on['download_mib_s']:.0f} / {off['download_mib_s']:.0f} "
            f"| {row['download_ratio']:.0%} "
            f"| {on['rss_growth_mib']:.1f} / {off['rss_growth_mib']:.1f} |"
        )
    lines.append("")
    for row in rows:
        for way in ("upload", "download"):
            ratio = row[f"{way}_ratio"]
            verdict = "met" if ratio >= THROUGHPUT_TARGET else "MISSED"
            lines.append(
                f"- {row['database']} {row['size_mib']} MiB {way}: {ratio:.0%} of "
                f"unsealed (target {THROUGHPUT_TARGET:.0%}): {verdict}"
            )
        extra = row["extra_rss_mib"]
        verdict = "met" if extra * MIB <= MEMORY_ALLOWANCE else "MISSED"
        lines.append(
            f"- {row['database']} {row['size_mib']} MiB worker memory: "
            f"{extra:+.1f} MiB against unsealed (allowance "
            f"{MEMORY_ALLOWANCE // MIB} MiB): {verdict}"
        )
    return "\n".join(lines)


def main():
    """Measure every database and size, then print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1024", help="MiB, comma-separated")
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--rounds", type=int, default=3, help="for up to 100 MiB")
    parser.add_argument("--big-rounds", type=int, default=2, help="for larger files")
    parser.add_argument(
        "--mysql", default="root@127.0.0.1:3306", help="user@host:port of MariaDB"
    )
    args = parser.parse_args()
    sizes = [int(size) * MIB for size in args.sizes.split(",")]
    blocks = random_blocks()
    rows, made = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="lockbox-seal-") as temp_dir:
            for size in sizes:
                for kind in args.databases.split(","):
                    row = measure(args, kind, size, blocks, temp_dir, made)
                    rows.append(row)
                    print(f"  {kind} {size // MIB} MiB: {row}", flush=True)
    finally:
        if made:
            drop_databases(args, made)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "encryption.json").write_text(
        json.dumps({"machine": machine(), "rows": rows}, indent=2)
    )
    print(report(rows))


if __name__ == "__main__":
    main()
