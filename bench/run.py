"""Upload and download speed and memory, side by side with the raw database.

    .venv/bin/python bench/run.py                 # 10 MiB, 100 MiB and 1 GiB
    .venv/bin/python bench/run.py --sizes 10,100  # quicker

For each MySQL driver it measures, in one run on the same MariaDB server:
1. the database's ceiling: raw inserts of 1 MiB blobs into a table shaped like
   file_chunk, committed every 8 chunks as the app does, then reading them back
   with a server-side (unbuffered) cursor;
2. the app under gunicorn on 127.0.0.1: a streaming multipart upload, then a
   streaming download, of the same sizes, taking turns with 1. so that a busy
   spell on a shared machine slows both sides of each ratio alike;
3. the same file as a resumable (tus) upload in 8 MiB PATCHes, against the
   form upload of step 2;
4. the gunicorn worker's resident memory, sampled from /proc during each transfer,
   against its idle size, and the largest temporary file it had open.

Results go to bench/results/latest.json and are printed as Markdown tables; the
ratios are against the fastest driver's raw ceiling measured in the same run, so
a busy machine slows both sides alike.
"""

import argparse
import hashlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.server import LiveServer, proc_status  # noqa: E402

MIB = 1024 * 1024
CHUNK = MIB
CHUNKS_PER_COMMIT = 8
BOUNDARY = "lockbox-bench-boundary"
DRIVERS = {
    "mysqlclient": "mysql",
    "mariadbconnector": "mariadb+mariadbconnector",
}
PASSWORD = "bench password 1234"


def random_blocks(count=8):
    """A few distinct random 1 MiB blocks, reused so the client spends no CPU."""
    return [os.urandom(CHUNK) for _ in range(count)]


def file_blocks(blocks, size):
    """The pieces of a ``size``-byte file built from the reusable blocks."""
    left, index = size, 0
    while left:
        block = blocks[index % len(blocks)]
        piece = block if left >= len(block) else block[:left]
        left -= len(piece)
        index += 1
        yield piece


def connect(driver, server):
    """A DB-API connection to ``server`` (host, port, user, database)."""
    host, port, user, database = server
    if driver == "mysqlclient":
        import MySQLdb

        return MySQLdb.connect(
            host=host, port=port, user=user, database=database, binary_prefix=True
        )
    import mariadb

    return mariadb.connect(host=host, port=port, user=user, database=database)


def wait_for_quiet_database(server, limit=60):
    """Wait until InnoDB has purged old row versions and stopped flushing hard.

    Writing or deleting a gigabyte leaves the server busy for a while after the
    statements return; measuring during that would charge one run for another.
    InnoDB leaves some dirty pages unflushed on purpose, so "quiet" is: purge
    done, and the number of dirty pages steady (within 1 % of the buffer pool)
    over a second.
    """
    import MySQLdb

    connection = MySQLdb.connect(host=server[0], port=server[1], user=server[2])
    cursor = connection.cursor()

    def status():
        cursor.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ("
            "'Innodb_buffer_pool_pages_dirty', 'Innodb_buffer_pool_pages_total', "
            "'Innodb_history_list_length')"
        )
        return {name: int(value) for name, value in cursor.fetchall()}

    deadline = time.monotonic() + limit
    before = status()
    while time.monotonic() < deadline:
        time.sleep(1)
        after = status()
        change = abs(
            after["Innodb_buffer_pool_pages_dirty"]
            - before["Innodb_buffer_pool_pages_dirty"]
        )
        steady = change <= after["Innodb_buffer_pool_pages_total"] // 100
        if after["Innodb_history_list_length"] < 64 and steady:
            break
        before = after
    connection.close()


def repeats_for(size):
    """Runs per measurement: small files are timed several times (median)."""
    return 5 if size <= 10 * MIB else 3 if size <= 100 * MIB else 1


def raw_once(driver, server, blocks, size):
    """MiB/s inserting and then reading ``size`` bytes as 1 MiB rows, no app."""
    connection = connect(driver, server)
    cursor = connection.cursor()
    cursor.execute("DROP TABLE IF EXISTS bench_chunk")
    cursor.execute(
        "CREATE TABLE bench_chunk (file_id INT NOT NULL, seq INT NOT NULL, "
        "data MEDIUMBLOB NOT NULL, PRIMARY KEY (file_id, seq)) ENGINE=InnoDB"
    )
    connection.commit()
    wait_for_quiet_database(server)
    started = time.perf_counter()
    for seq, piece in enumerate(file_blocks(blocks, size)):
        cursor.execute(
            "INSERT INTO bench_chunk (file_id, seq, data) VALUES (%s, %s, %s)",
            (1, seq, piece),
        )
        if (seq + 1) % CHUNKS_PER_COMMIT == 0:
            connection.commit()
    connection.commit()
    insert_seconds = time.perf_counter() - started
    cursor.close()

    if driver == "mysqlclient":
        import MySQLdb.cursors

        reader = connection.cursor(MySQLdb.cursors.SSCursor)
    else:
        reader = connection.cursor(buffered=False)
    wait_for_quiet_database(server)
    started = time.perf_counter()
    reader.execute("SELECT data FROM bench_chunk WHERE file_id = 1 ORDER BY seq")
    read_bytes = 0
    for (data,) in reader:
        read_bytes += len(data)
    read_seconds = time.perf_counter() - started
    reader.close()
    assert read_bytes == size, (read_bytes, size)
    cursor = connection.cursor()
    cursor.execute("DROP TABLE bench_chunk")
    connection.commit()
    connection.close()
    return size / MIB / insert_seconds, size / MIB / read_seconds


class WorkerWatch:
    """Samples a worker's RSS and its open temporary files while a transfer runs."""

    def __init__(self, pid, temp_dir):
        self.pid = pid
        self.temp_dir = str(temp_dir)
        self.peak_rss = 0
        self.temp_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self):
        self.peak_rss = max(self.peak_rss, proc_status(self.pid, "VmRSS"))
        fd_dir = Path(f"/proc/{self.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
                if target.startswith(self.temp_dir) or target.startswith("/tmp/"):
                    self.temp_bytes = max(self.temp_bytes, os.stat(fd).st_size)
            except OSError:
                continue

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.01)


def connect_http(port):
    """An HTTP connection with Nagle's algorithm off, as curl and browsers do."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def upload(port, token, blocks, size):
    """Send a file as the upload form does, streamed; returns (seconds, body)."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="inputFile"; filename="bench.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    connection = connect_http(port)
    started = time.perf_counter()
    connection.putrequest("POST", f"/upload?token={token}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    connection.putheader("Content-Length", str(len(head) + size + len(tail)))
    connection.endheaders()
    connection.send(head)
    for piece in file_blocks(blocks, size):
        connection.send(piece)
    connection.send(tail)
    response = connection.getresponse()
    body = json.loads(response.read())
    seconds = time.perf_counter() - started
    connection.close()
    if response.status != 201:
        raise RuntimeError(f"upload failed: {response.status} {body}")
    return seconds, body


TUS_PIECE = 8 * MIB


def tus_upload(port, token, blocks, size, piece=TUS_PIECE):
    """Send a file as a resumable (tus) upload in ``piece``-byte PATCHes on one
    connection, as tus clients do; returns (seconds, the stored file's id)."""
    tus = {"Tus-Resumable": "1.0.0"}
    connection = connect_http(port)
    started = time.perf_counter()
    connection.request(
        "POST",
        "/uploads",
        headers={
            **tus,
            "Authorization": f"Bearer {token}",
            "Upload-Length": str(size),
            "Upload-Metadata": "filename YmVuY2guYmlu",
        },
    )
    response = connection.getresponse()
    response.read()
    if response.status != 201:
        raise RuntimeError(f"tus creation failed: {response.status}")
    path = urlsplit(response.getheader("Location")).path
    pieces = file_blocks(blocks, size)
    offset, file_id = 0, None
    while offset < size:
        length = min(piece, size - offset)
        connection.putrequest("PATCH", path)
        for name, value in {
            **tus,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(offset),
            "Content-Length": str(length),
        }.items():
            connection.putheader(name, value)
        connection.endheaders()
        sent = 0
        while sent < length:
            block = next(pieces)
            connection.send(block)
            sent += len(block)
        response = connection.getresponse()
        response.read()
        if response.status != 204:
            raise RuntimeError(f"tus PATCH failed: {response.status}")
        offset = int(response.getheader("Upload-Offset"))
        file_id = response.getheader("Lockbox-File-Id")
    seconds = time.perf_counter() - started
    connection.close()
    return seconds, int(file_id)


def download(port, token, file_id, digest=None):
    """Fetch a file, streamed into one reused buffer; returns (seconds, sha256).

    The timed run passes no digest: hashing on the client would measure the
    client's CPU, not the server, so integrity is checked in a second download.
    """
    connection = connect_http(port)
    started = time.perf_counter()
    connection.request("GET", f"/files/{file_id}/download?token={token}")
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"download failed: {response.status}")
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        count = response.readinto(buffer)
        if not count:
            break
        if digest is not None:
            digest.update(view[:count])
    seconds = time.perf_counter() - started
    connection.close()
    return seconds, digest.hexdigest() if digest is not None else None


def expected_sha256(blocks, size):
    """The sha256 of the file ``file_blocks`` builds."""
    digest = hashlib.sha256()
    for piece in file_blocks(blocks, size):
        digest.update(piece)
    return digest.hexdigest()


def prepare_app_database(url, env):
    """Create the app's tables and its bench user (once per driver URL)."""
    env = {**os.environ, **env, "DATABASE_URL": url}
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    subprocess.run([*flask, "init-db"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [*flask, "users", "create", "bench"],
        cwd=ROOT,
        env=env,
        input=PASSWORD + "\n",
        text=True,
        check=False,
        capture_output=True,
    )


def measure(driver, server_db, url, blocks, size, temp_dir):
    """Raw database and app, turn about, for one driver and size.

    Each repetition first measures the raw insert and read, then an upload and a
    download through the app under gunicorn, so that a busy spell on this shared
    machine hits both sides of a ratio. Returns (raw row, app row), medians.
    """
    import requests

    env = {
        "SECRET_KEY": "bench-" + uuid.uuid4().hex + uuid.uuid4().hex,
        "DATABASE_URL": url,
        "MAX_CONTENT_LENGTH": str(2048 * MIB),
        "TMPDIR": str(temp_dir),
    }
    prepare_app_database(url, env)
    with LiveServer(env) as server:
        token = requests.get(
            server.url + "/login", auth=("bench", PASSWORD), timeout=30
        ).json()["token"]
        [worker] = server.worker_pids()
        # Warm up: the worker's first requests open its database connections.
        _, warm = upload(server.port, token, blocks, MIB)
        download(server.port, token, warm["id"])
        requests.delete(f"{server.url}/files/{warm['id']}", params={"token": token})
        idle = proc_status(worker, "VmRSS")
        up_times, down_times, tus_times, raw_runs = [], [], [], []
        up_peak, down_peak, tus_peak, temp_bytes = 0, 0, 0, 0
        for _ in range(repeats_for(size)):
            raw_runs.append(raw_once(driver, server_db, blocks, size))
            wait_for_quiet_database(server_db)
            with WorkerWatch(worker, temp_dir) as up_watch:
                up_seconds, body = upload(server.port, token, blocks, size)
            if body["sha256"] != expected_sha256(blocks, size):
                raise RuntimeError("stored sha256 differs from the bytes sent")
            # The same file as a resumable upload, in 8 MiB PATCHes, right
            # after the form upload (before any delete, whose purge would slow it).
            wait_for_quiet_database(server_db)
            with WorkerWatch(worker, temp_dir) as tus_watch:
                tus_seconds, tus_id = tus_upload(server.port, token, blocks, size)
            stored = requests.get(
                f"{server.url}/files/{tus_id}", params={"token": token}, timeout=60
            ).json()
            if stored["sha256"] != body["sha256"]:
                raise RuntimeError("the tus upload stored other bytes")
            wait_for_quiet_database(server_db)
            with WorkerWatch(worker, temp_dir) as down_watch:
                down_seconds, _ = download(server.port, token, body["id"])
            _, sha = download(server.port, token, body["id"], hashlib.sha256())
            if sha != body["sha256"]:
                raise RuntimeError("downloaded bytes differ from the upload")
            for file_id in (body["id"], tus_id):
                requests.delete(
                    f"{server.url}/files/{file_id}",
                    params={"token": token},
                    timeout=600,
                )
            tus_times.append(tus_seconds)
            tus_peak = max(tus_peak, tus_watch.peak_rss)
            temp_bytes = max(temp_bytes, tus_watch.temp_bytes)
            up_times.append(up_seconds)
            down_times.append(down_seconds)
            up_peak = max(up_peak, up_watch.peak_rss)
            down_peak = max(down_peak, down_watch.peak_rss)
            temp_bytes = max(temp_bytes, up_watch.temp_bytes, down_watch.temp_bytes)
    raw = {
        "driver": driver,
        "size_mib": size // MIB,
        "insert_mib_s": statistics.median(insert for insert, _ in raw_runs),
        "read_mib_s": statistics.median(read for _, read in raw_runs),
    }
    return raw, {
        "driver": driver,
        "size_mib": size // MIB,
        "upload_mib_s": size / MIB / statistics.median(up_times),
        "tus_upload_mib_s": size / MIB / statistics.median(tus_times),
        "tus_rss_growth_mib": (tus_peak - idle) / MIB,
        "download_mib_s": size / MIB / statistics.median(down_times),
        "idle_rss_mib": idle / MIB,
        "upload_rss_growth_mib": (up_peak - idle) / MIB,
        "download_rss_growth_mib": (down_peak - idle) / MIB,
        "temp_file_bytes": temp_bytes,
    }


def main():
    """Run every measurement and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1024", help="MiB, comma-separated")
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument(
        "--mysql", default="root@127.0.0.1:3306", help="user@host:port of MariaDB"
    )
    args = parser.parse_args()
    sizes = [int(s) * MIB for s in args.sizes.split(",")]
    drivers = args.drivers.split(",")
    parts = urlsplit("mysql://" + args.mysql)
    database = f"lockbox_bench_{uuid.uuid4().hex[:8]}"
    server = (parts.hostname, parts.port or 3306, parts.username or "root", database)

    import MySQLdb

    admin = MySQLdb.connect(host=server[0], port=server[1], user=server[2])
    admin.cursor().execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    blocks = random_blocks()
    results = {"raw": [], "app": [], "machine": os.uname().nodename}
    try:
        with tempfile.TemporaryDirectory(prefix="lockbox-bench-") as temp_dir:
            for size in sizes:
                for driver in drivers:
                    url = f"{DRIVERS[driver]}://{args.mysql}/{database}"
                    raw, app = measure(driver, server, url, blocks, size, temp_dir)
                    results["raw"].append(raw)
                    results["app"].append(app)
                    print(f"  {driver} {size // MIB} MiB: {raw} {app}", flush=True)
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(report(results))


def report(results):
    """Markdown tables with the ratios against the fastest raw ceiling per size."""
    lines = [
        "| driver | size | raw insert MiB/s | raw read MiB/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in results["raw"]:
        lines.append(
            f"| {row['driver']} | {row['size_mib']} MiB | {row['insert_mib_s']:.0f} "
            f"| {row['read_mib_s']:.0f} |"
        )
    lines += [
        "",
        "| driver | size | upload MiB/s | ÷ best raw insert | download MiB/s "
        "| ÷ best raw read | RSS growth up / down MiB | temp file bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["app"]:
        same = [r for r in results["raw"] if r["size_mib"] == row["size_mib"]]
        best_insert = max(r["insert_mib_s"] for r in same)
        best_read = max(r["read_mib_s"] for r in same)
        lines.append(
            f"| {row['driver']} | {row['size_mib']} MiB | {row['upload_mib_s']:.0f} "
            f"| {row['upload_mib_s'] / best_insert:.0%} | {row['download_mib_s']:.0f} "
            f"| {row['download_mib_s'] / best_read:.0%} "
            f"| {row['upload_rss_growth_mib']:.1f} / "
            f"{row['download_rss_growth_mib']:.1f} | {row['temp_file_bytes']} |"
        )
    lines += [
        "",
        "| driver | size | form upload MiB/s | tus upload MiB/s (8 MiB PATCHes) "
        "| tus ÷ form | RSS growth form / tus MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["app"]:
        lines.append(
            f"| {row['driver']} | {row['size_mib']} MiB | {row['upload_mib_s']:.0f} "
            f"| {row['tus_upload_mib_s']:.0f} "
            f"| {row['tus_upload_mib_s'] / row['upload_mib_s']:.0%} "
            f"| {row['upload_rss_growth_mib']:.1f} / {row['tus_rss_growth_mib']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
