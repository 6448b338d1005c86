"""Upload and download speed and memory, side by side with the raw database.

    .venv/bin/python bench/run.py                 # 10 MiB, 100 MiB and 1 GiB
    .venv/bin/python bench/run.py --sizes 10,100  # quicker
    .venv/bin/python bench/run.py --sizes 10 --parallel-size 20  # a quick check
    .venv/bin/python bench/run.py --parallel 0    # no concurrency rows

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
   against its idle size, and the largest temporary file it had open;
5. concurrency (``--parallel 8``, 0 leaves it out; ``--parallel-size`` MiB
   each, 100 by default): 8 writers at once, each on its own DB-API
   connection, inserting a file as 1 MiB rows committed every 8, then 8
   readers at once reading them back with server-side cursors; against 8
   streaming uploads at once to the app, then 8 streaming downloads of those
   files (each one's SHA-256 checked, in a second, untimed pass). Raw and app
   take turns, as in 2. Aggregate MiB/s is all the bytes over the wall time
   from the first stream's start to the last one's end. The writers and
   readers are threads of this process: mysqlclient and MariaDB
   Connector/Python both release the GIL while they wait on the server (a
   thread blocked in ``SELECT SLEEP(1)`` leaves the others running), so
   threads overlap their I/O as processes would. The app runs as committed:
   gunicorn.conf.py's own workers and threads (LiveServer ``shipped=True``),
   sign-in limits in Redis (``--redis``) as several workers need. Every
   worker's RSS is sampled during the parallel transfers, with the number of
   client connections it holds; the largest growth of any worker above its
   idle size is held to 64 MiB. The ratios of these rows are the app's
   against the same driver's raw figure. The raw side binds the bytes in the
   driver's fastest form, as the app does (mysqlclient: a hexadecimal literal,
   models.MediumBlob), as in 1.

The single-stream rows (1.-4.) run one gthread worker with 4 threads (the
harness's overrides of gunicorn.conf.py's worker settings), so that one
worker's memory can be watched; the concurrency rows run the shipped settings.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CONFIG_OVERRIDES, gunicorn_settings  # noqa: E402
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
# The most any gunicorn worker may grow above its idle size while 8 transfers run.
PARALLEL_GROWTH_LIMIT = 64 * MIB


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

        from models import HexLiteral, hex_literal

        connection = MySQLdb.connect(
            host=host, port=port, user=user, database=database, binary_prefix=True
        )
        # mysqlclient's fastest way with bytes, as the app sends them
        # (models.MediumBlob): a hexadecimal literal, not an escaped string.
        connection.encoders[HexLiteral] = hex_literal
        return connection
    import mariadb

    return mariadb.connect(host=host, port=port, user=user, database=database)


def blob(driver, piece):
    """A chunk's bytes as a parameter in the driver's fastest form."""
    if driver == "mysqlclient":
        from models import HexLiteral

        return HexLiteral(piece)
    return piece


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


def make_chunk_table(connection, table):
    """A fresh table shaped like file_chunk."""
    cursor = connection.cursor()
    cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(
        f"CREATE TABLE {table} (file_id INT NOT NULL, seq INT NOT NULL, "
        "data MEDIUMBLOB NOT NULL, PRIMARY KEY (file_id, seq)) ENGINE=InnoDB"
    )
    connection.commit()
    return cursor


def insert_file(driver, connection, table, file_id, blocks, size):
    """Insert a ``size``-byte file as 1 MiB rows, committing every 8 as the app
    does."""
    cursor = connection.cursor()
    for seq, piece in enumerate(file_blocks(blocks, size)):
        cursor.execute(
            f"INSERT INTO {table} (file_id, seq, data) VALUES (%s, %s, %s)",
            (file_id, seq, blob(driver, piece)),
        )
        if (seq + 1) % CHUNKS_PER_COMMIT == 0:
            connection.commit()
    connection.commit()
    cursor.close()


def raw_once(driver, server, blocks, size):
    """MiB/s inserting and then reading ``size`` bytes as 1 MiB rows, no app."""
    connection = connect(driver, server)
    cursor = make_chunk_table(connection, "bench_chunk")
    wait_for_quiet_database(server)
    started = time.perf_counter()
    insert_file(driver, connection, "bench_chunk", 1, blocks, size)
    insert_seconds = time.perf_counter() - started

    reader = unbuffered_cursor(driver, connection)
    wait_for_quiet_database(server)
    started = time.perf_counter()
    reader.execute("SELECT data FROM bench_chunk WHERE file_id = 1 ORDER BY seq")
    read_bytes = 0
    for (data,) in reader:
        read_bytes += len(data)
    read_seconds = time.perf_counter() - started
    reader.close()
    assert read_bytes == size, (read_bytes, size)
    cursor.execute("DROP TABLE bench_chunk")
    connection.commit()
    connection.close()
    return size / MIB / insert_seconds, size / MIB / read_seconds


class WorkerWatch:
    """Samples workers' RSS and their open temporary files while transfers run.

    ``pids``: one worker's pid, or a list of them (every worker of a server).
    ``peaks`` holds each one's largest RSS, ``peak_rss`` the largest of all.
    With the server's ``port``, ``connections`` holds the most client
    connections each worker had open at once (what its memory served).
    """

    def __init__(self, pids, temp_dir, port=None):
        self.pids = [pids] if isinstance(pids, int) else list(pids)
        self.temp_dir = str(temp_dir)
        self.port = port
        self.peaks = dict.fromkeys(self.pids, 0)
        self.connections = dict.fromkeys(self.pids, 0)
        self.temp_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak_rss(self):
        """The largest RSS any watched worker reached."""
        return max(self.peaks.values())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self):
        clients = self._client_sockets() if self.port else set()
        for pid in self.pids:
            self._sample_one(pid, clients)

    def _client_sockets(self):
        """``socket:[inode]`` of the established connections to the server."""
        local = f":{self.port:04X}"
        found = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(local) and fields[3] == "01":
                found.add(f"socket:[{fields[9]}]")
        return found

    def _sample_one(self, pid, clients=frozenset()):
        self.peaks[pid] = max(self.peaks[pid], proc_status(pid, "VmRSS"))
        fd_dir = Path(f"/proc/{pid}/fd")
        open_clients = 0
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
                if target in clients:
                    open_clients += 1
                elif target.startswith(self.temp_dir) or target.startswith("/tmp/"):
                    self.temp_bytes = max(self.temp_bytes, os.stat(fd).st_size)
            except OSError:
                continue
        self.connections[pid] = max(self.connections[pid], open_clients)

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


def sign_in(server):
    """The bench user's token, from the app's ``GET /login``."""
    import requests

    return requests.get(
        server.url + "/login", auth=("bench", PASSWORD), timeout=30
    ).json()["token"]


@dataclass
class SingleStream:
    """The app under gunicorn with its one worker, signed in: the single-stream
    rows' transfers, each with the worker watched, and their checks."""

    server: LiveServer
    token: str
    worker: int
    temp_dir: str

    def watch(self):
        """The worker's RSS and temporary files, sampled while a transfer runs."""
        return WorkerWatch(self.worker, self.temp_dir)

    def warm_up(self, blocks):
        """A small upload, download and delete: the worker's first requests open
        its database connections, before its idle size is read."""
        import requests

        _, warm = upload(self.server.port, self.token, blocks, MIB)
        download(self.server.port, self.token, warm["id"])
        requests.delete(
            f"{self.server.url}/files/{warm['id']}", params={"token": self.token}
        )

    def turn(self, server_db, blocks, size):
        """One repetition through the app, each transfer timed on a quiet database
        with the worker watched: a form upload, the same file as a tus upload, a
        download; then the untimed checks and the deletes.

        Returns ``{"upload" | "tus" | "download": (seconds, watch)}``.
        """
        port, token = self.server.port, self.token
        wait_for_quiet_database(server_db)
        with self.watch() as up_watch:
            up_seconds, body = upload(port, token, blocks, size)
        if body["sha256"] != expected_sha256(blocks, size):
            raise RuntimeError("stored sha256 differs from the bytes sent")
        # The same file as a resumable upload, in 8 MiB PATCHes, right
        # after the form upload (before any delete, whose purge would slow it).
        wait_for_quiet_database(server_db)
        with self.watch() as tus_watch:
            tus_seconds, tus_id = tus_upload(port, token, blocks, size)
        self.check_tus(tus_id, body)
        # The download reads the file written last, as the raw read reads
        # the rows just inserted: the form upload's file has been pushed
        # out of a default 128 MiB buffer pool by the tus upload's 100 MiB
        # (InnoDB keeps a large scan from taking over the pool), and
        # reading it would time the disk, not the app.
        wait_for_quiet_database(server_db)
        with self.watch() as down_watch:
            down_seconds, _ = download(port, token, tus_id)
        _, sha = download(port, token, tus_id, hashlib.sha256())
        if sha != body["sha256"]:
            raise RuntimeError("downloaded bytes differ from the upload")
        self.delete((body["id"], tus_id))
        return {
            "upload": (up_seconds, up_watch),
            "tus": (tus_seconds, tus_watch),
            "download": (down_seconds, down_watch),
        }

    def check_tus(self, tus_id, body):
        """The tus upload stored the same bytes as the form upload (``body``)."""
        import requests

        stored = requests.get(
            f"{self.server.url}/files/{tus_id}",
            params={"token": self.token},
            timeout=60,
        ).json()
        if stored["sha256"] != body["sha256"]:
            raise RuntimeError("the tus upload stored other bytes")

    def delete(self, file_ids):
        """Delete a repetition's files (their answers unchecked)."""
        delete_files(self.server, self.token, file_ids, check=False)


def delete_files(server, token, file_ids, check):
    """Delete files one after the other; with ``check``, a failure raises."""
    import requests

    for file_id in file_ids:
        answer = requests.delete(
            f"{server.url}/files/{file_id}", params={"token": token}, timeout=600
        )
        if check:
            answer.raise_for_status()


class StreamTimes:
    """Over the repetitions, per kind of transfer (upload, tus, download): the
    seconds of each and the largest RSS the worker reached; and the largest
    temporary file it had open during any."""

    def __init__(self):
        """Nothing measured yet."""
        self.seconds = {"upload": [], "tus": [], "download": []}
        self.peak_rss = dict.fromkeys(self.seconds, 0)
        self.temp_bytes = 0

    def add(self, turn):
        """One repetition's ``{kind: (seconds, watch)}``."""
        for kind, (seconds, watch) in turn.items():
            self.seconds[kind].append(seconds)
            self.peak_rss[kind] = max(self.peak_rss[kind], watch.peak_rss)
            self.temp_bytes = max(self.temp_bytes, watch.temp_bytes)

    def mib_s(self, kind, size):
        """MiB/s of a ``size``-byte transfer in the median time."""
        return size / MIB / statistics.median(self.seconds[kind])

    def growth_mib(self, kind, idle):
        """The worker's largest RSS during ``kind`` above its ``idle`` size, MiB."""
        return (self.peak_rss[kind] - idle) / MIB


def raw_row(driver, size, raw_runs):
    """The raw database's single-stream row: median insert and read MiB/s."""
    return {
        "driver": driver,
        "size_mib": size // MIB,
        "insert_mib_s": statistics.median(insert for insert, _ in raw_runs),
        "read_mib_s": statistics.median(read for _, read in raw_runs),
    }


def app_row(driver, size, times, idle):
    """The app's single-stream row: median MiB/s and the worker's growth."""
    return {
        "driver": driver,
        "size_mib": size // MIB,
        "upload_mib_s": times.mib_s("upload", size),
        "tus_upload_mib_s": times.mib_s("tus", size),
        "tus_rss_growth_mib": times.growth_mib("tus", idle),
        "download_mib_s": times.mib_s("download", size),
        "idle_rss_mib": idle / MIB,
        "upload_rss_growth_mib": times.growth_mib("upload", idle),
        "download_rss_growth_mib": times.growth_mib("download", idle),
        "temp_file_bytes": times.temp_bytes,
    }


def measure(driver, server_db, url, blocks, size, temp_dir):
    """Raw database and app, turn about, for one driver and size.

    Each repetition first measures the raw insert and read, then an upload and a
    download through the app under gunicorn, so that a busy spell on this shared
    machine hits both sides of a ratio. Returns (raw row, app row), medians.
    """
    env = {
        "SECRET_KEY": "bench-" + uuid.uuid4().hex + uuid.uuid4().hex,
        "DATABASE_URL": url,
        "MAX_CONTENT_LENGTH": str(2048 * MIB),
        "TMPDIR": str(temp_dir),
    }
    prepare_app_database(url, env)
    with LiveServer(env) as server:
        token = sign_in(server)
        [worker] = server.worker_pids()
        app = SingleStream(server, token, worker, temp_dir)
        app.warm_up(blocks)
        idle = proc_status(worker, "VmRSS")
        raw_runs, times = [], StreamTimes()
        for _ in range(repeats_for(size)):
            raw_runs.append(raw_once(driver, server_db, blocks, size))
            times.add(app.turn(server_db, blocks, size))
    return raw_row(driver, size, raw_runs), app_row(driver, size, times, idle)


def run_parallel(count, work, setup=None):
    """``work(index, prepared)`` for every index below ``count``, all at once.

    Each thread first runs ``setup(index)`` (opening a connection, say: not
    timed), then all start together. Returns the results in order, and the wall
    time from the first one's start to the last one's end.
    """
    barrier = threading.Barrier(count)

    def timed(index):
        try:
            prepared = setup(index) if setup else None
        except BaseException:
            barrier.abort()
            raise
        barrier.wait(timeout=600)
        started = time.perf_counter()
        result = work(index, prepared)
        return started, time.perf_counter(), result

    with ThreadPoolExecutor(max_workers=count) as pool:
        done = list(pool.map(timed, range(count)))
    wall = max(end for _, end, _ in done) - min(start for start, _, _ in done)
    return [result for _, _, result in done], wall


def unbuffered_cursor(driver, connection):
    """A server-side cursor: rows come as they are read, not all at once."""
    if driver == "mysqlclient":
        import MySQLdb.cursors

        return connection.cursor(MySQLdb.cursors.SSCursor)
    return connection.cursor(buffered=False)


def raw_parallel_once(driver, server, blocks, size, count):
    """Aggregate MiB/s of ``count`` writers at once, then ``count`` readers.

    Writer ``i`` inserts file ``i + 1`` as 1 MiB rows on a connection of its
    own, committing every 8 rows as the app does; then reader ``i`` reads it
    back, on its connection, with a server-side cursor.
    """
    admin = connect(driver, server)
    cursor = make_chunk_table(admin, "bench_chunk_parallel")
    connections = [None] * count

    def open_connection(index):
        connections[index] = connect(driver, server)
        return connections[index]

    def write(index, connection):
        insert_file(driver, connection, "bench_chunk_parallel", index + 1, blocks, size)

    def read(index, connection):
        reader = unbuffered_cursor(driver, connection)
        reader.execute(
            "SELECT data FROM bench_chunk_parallel WHERE file_id = %s ORDER BY seq",
            (index + 1,),
        )
        read_bytes = 0
        for (data,) in reader:
            read_bytes += len(data)
        reader.close()
        return read_bytes

    try:
        wait_for_quiet_database(server)
        _, write_seconds = run_parallel(count, write, setup=open_connection)
        wait_for_quiet_database(server)
        sizes, read_seconds = run_parallel(
            count, read, setup=lambda index: connections[index]
        )
        if sizes != [size] * count:
            raise RuntimeError(f"raw readers read {sizes}, not {size} bytes each")
    finally:
        for connection in connections:
            if connection is not None:
                connection.close()
        cursor.execute("DROP TABLE IF EXISTS bench_chunk_parallel")
        admin.commit()
        admin.close()
    total = size * count / MIB
    return total / write_seconds, total / read_seconds


def parallel_env(url, options):
    """The app's environment for the concurrency rows: gunicorn.conf.py's own
    worker settings (no overrides), sign-in limits in Redis."""
    env = {name: None for name in CONFIG_OVERRIDES}
    env.update(
        SECRET_KEY="bench-" + uuid.uuid4().hex + uuid.uuid4().hex,
        DATABASE_URL=url,
        MAX_CONTENT_LENGTH=str(2048 * MIB),
        TMPDIR=str(options["temp_dir"]),
        RATELIMIT_STORAGE_URI=options["redis"],
    )
    return env


@dataclass
class ParallelApp:
    """The app as committed, signed in, and its workers: ``count`` transfers at
    once with every worker watched, their checks and their clean-ups."""

    server: LiveServer
    token: str
    workers: list
    count: int
    blocks: list
    temp_dir: str

    def watch(self):
        """Every worker's RSS, temporary files and client connections."""
        return WorkerWatch(self.workers, self.temp_dir, self.server.port)

    def upload_all(self, file_size):
        """``count`` uploads at once: (their bodies, wall seconds)."""
        server, token, blocks = self.server, self.token, self.blocks
        return run_parallel(
            self.count,
            lambda index, _: upload(server.port, token, blocks, file_size)[1],
        )

    def download_all(self, bodies, check=False):
        """``count`` downloads at once: (sha256s when ``check``, wall seconds)."""
        server, token = self.server, self.token

        def fetch(index, file_id):
            """One download, hashed when ``check``."""
            digest = hashlib.sha256() if check else None
            return download(server.port, token, file_id, digest)[1]

        file_ids = [body["id"] for body in bodies]
        return run_parallel(self.count, fetch, setup=file_ids.__getitem__)

    def delete(self, file_ids):
        """Delete files one after the other; a failure raises."""
        delete_files(self.server, self.token, file_ids, check=True)

    def warm_up(self):
        """Warm up every worker and thread: small transfers at once, twice, so
        that each worker has opened its database connections before its idle
        size is read."""
        for _ in range(2):
            warm, _ = self.upload_all(MIB)
            self.download_all(warm)
            self.delete(body["id"] for body in warm)

    def transfer_round(self, server_db, size, expected):
        """One round through the app: ``count`` uploads at once, then as many
        downloads, each timed on a quiet database with the workers watched; the
        integrity checks and the deletes untimed.

        Returns ``{"upload" | "download": (aggregate MiB/s, watch)}``.
        """
        wait_for_quiet_database(server_db)
        with self.watch() as up_watch:
            bodies, up_seconds = self.upload_all(size)
        if any(body["sha256"] != expected for body in bodies):
            raise RuntimeError("a stored sha256 differs from the bytes sent")
        wait_for_quiet_database(server_db)
        with self.watch() as down_watch:
            _, down_seconds = self.download_all(bodies)
        # Integrity, untimed: hashing here would time this process's CPU.
        checked, _ = self.download_all(bodies, check=True)
        if checked != [expected] * self.count:
            raise RuntimeError("downloaded bytes differ from the uploads")
        self.delete(body["id"] for body in bodies)
        return {
            "upload": (size * self.count / MIB / up_seconds, up_watch),
            "download": (size * self.count / MIB / down_seconds, down_watch),
        }


class WorkerPeaks:
    """Per worker, over the rounds, in one direction (uploads or downloads): the
    most it grew above its idle RSS and the most transfers it served at once;
    and the largest temporary file any had open."""

    def __init__(self, idle):
        """Nothing seen yet of the workers whose ``idle`` RSS is given, by pid."""
        self.idle = idle
        self.growth = {}
        self.streams = {}
        self.temp_bytes = 0

    def add(self, watch):
        """One round's watch of every worker."""
        for pid, idle in self.idle.items():
            self.growth[pid] = max(self.growth.get(pid, 0), watch.peaks[pid] - idle)
            self.streams[pid] = max(self.streams.get(pid, 0), watch.connections[pid])
        self.temp_bytes = max(self.temp_bytes, watch.temp_bytes)

    @property
    def max_growth(self):
        """The most any worker grew, in bytes."""
        return max(self.growth.values())


class ParallelRounds:
    """What the rounds of the concurrency rows gather: each round's raw and app
    aggregate MiB/s, and the workers' idle sizes and peaks each way."""

    def __init__(self, idle):
        """No round yet, the workers' ``idle`` RSS given, by pid."""
        self.idle = idle
        self.raw_runs = []
        self.rates = {"upload": [], "download": []}
        self.peaks = {"upload": WorkerPeaks(idle), "download": WorkerPeaks(idle)}

    def add_app(self, transfers):
        """One app round's ``{direction: (aggregate MiB/s, watch)}``."""
        for direction, (rate, watch) in transfers.items():
            self.rates[direction].append(rate)
            self.peaks[direction].add(watch)

    def speeds(self):
        """The row's aggregate MiB/s, medians and each round's, and ratios."""
        raw_write = statistics.median(write for write, _ in self.raw_runs)
        raw_read = statistics.median(read for _, read in self.raw_runs)
        app_upload = statistics.median(self.rates["upload"])
        app_download = statistics.median(self.rates["download"])
        return {
            "raw_write_mib_s": raw_write,
            "app_upload_mib_s": app_upload,
            "upload_ratio": app_upload / raw_write,
            "raw_read_mib_s": raw_read,
            "app_download_mib_s": app_download,
            "download_ratio": app_download / raw_read,
            "raw_runs_mib_s": self.raw_runs,
            "app_upload_runs_mib_s": self.rates["upload"],
            "app_download_runs_mib_s": self.rates["download"],
        }

    def memory(self):
        """The row's worker sizes: idle, growth and streams per worker, the
        largest growth against the limit, and the largest temporary file."""
        idle, up, down = self.idle, self.peaks["upload"], self.peaks["download"]
        growth = max(up.max_growth, down.max_growth)
        return {
            "idle_rss_mib": {str(pid): rss / MIB for pid, rss in idle.items()},
            "worker_growth_mib": {
                str(pid): max(up.growth[pid], down.growth[pid]) / MIB for pid in idle
            },
            # Per worker: its growth and the most transfers it served at once.
            "workers": [
                {
                    "pid": pid,
                    "idle_rss_mib": idle[pid] / MIB,
                    "upload_growth_mib": up.growth[pid] / MIB,
                    "upload_streams_at_once": up.streams[pid],
                    "download_growth_mib": down.growth[pid] / MIB,
                    "download_streams_at_once": down.streams[pid],
                }
                for pid in idle
            ],
            "upload_max_worker_growth_mib": up.max_growth / MIB,
            "download_max_worker_growth_mib": down.max_growth / MIB,
            "max_worker_growth_mib": growth / MIB,
            "growth_limit_mib": PARALLEL_GROWTH_LIMIT // MIB,
            "growth_limit_met": growth <= PARALLEL_GROWTH_LIMIT,
            "temp_file_bytes": max(up.temp_bytes, down.temp_bytes),
        }


def measure_parallel(driver, server_db, url, blocks, size, count, rounds, options):
    """Raw database and app, turn about, ``count`` transfers at once each.

    The app runs with the committed gunicorn.conf.py (its worker count and
    threads; sign-in limits in Redis, which several workers need). Returns one
    row: aggregate MiB/s raw and through the app (medians over ``rounds``), and
    the largest growth of any worker's RSS above its idle size.
    """
    env = parallel_env(url, options)
    prepare_app_database(url, {k: v for k, v in env.items() if v is not None})
    expected = expected_sha256(blocks, size)
    with LiveServer(env, shipped=True) as server:
        token = sign_in(server)
        workers = sorted(server.worker_pids())
        app = ParallelApp(server, token, workers, count, blocks, options["temp_dir"])
        app.warm_up()
        gathered = ParallelRounds({pid: proc_status(pid, "VmRSS") for pid in workers})
        for _ in range(rounds):
            gathered.raw_runs.append(
                raw_parallel_once(driver, server_db, blocks, size, count)
            )
            gathered.add_app(app.transfer_round(server_db, size, expected))
        if sorted(server.worker_pids()) != workers:
            raise RuntimeError("a gunicorn worker was restarted during the run")
        wait_for_quiet_database(server_db)
    return {
        "driver": driver,
        "streams": count,
        "size_mib": size // MIB,
        "rounds": rounds,
        "gunicorn": {**gunicorn_settings(env), "worker_pids": len(workers)},
        **gathered.speeds(),
        **gathered.memory(),
    }


def parse_args():
    """Command-line options, checked; ``sizes`` in bytes and ``drivers`` as
    lists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1024", help="MiB, comma-separated")
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument(
        "--mysql", default="root@127.0.0.1:3306", help="user@host:port of MariaDB"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=8,
        help="transfers at once for the concurrency rows; 0: none (default: 8)",
    )
    parser.add_argument(
        "--parallel-size",
        type=int,
        default=100,
        help="MiB of each parallel transfer (default: 100)",
    )
    parser.add_argument(
        "--parallel-rounds",
        type=int,
        default=1,
        help="rounds of the concurrency rows, medians reported (default: 1)",
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379",
        help="shared sign-in limits for the shipped workers (default: %(default)s)",
    )
    args = parser.parse_args()
    if args.parallel < 0 or args.parallel_size < 1 or args.parallel_rounds < 1:
        parser.error("--parallel >= 0, --parallel-size and --parallel-rounds >= 1")
    args.sizes = [int(s) * MIB for s in args.sizes.split(",")]
    args.drivers = args.drivers.split(",")
    return args


def app_url(args, server, driver):
    """The app's database URL for ``driver``: the bench database on --mysql."""
    return f"{DRIVERS[driver]}://{args.mysql}/{server[3]}"


def single_stream_rows(args, server, blocks, temp_dir, results):
    """Every size through every driver, raw and app, each row printed as done."""
    for size in args.sizes:
        for driver in args.drivers:
            url = app_url(args, server, driver)
            raw, app = measure(driver, server, url, blocks, size, temp_dir)
            results["raw"].append(raw)
            results["app"].append(app)
            print(f"  {driver} {size // MIB} MiB: {raw} {app}", flush=True)


def concurrency_rows(args, server, blocks, temp_dir, results):
    """Every driver's concurrency row (none with --parallel 0), printed as done."""
    for driver in args.drivers if args.parallel else []:
        url = app_url(args, server, driver)
        row = measure_parallel(
            driver,
            server,
            url,
            blocks,
            args.parallel_size * MIB,
            args.parallel,
            args.parallel_rounds,
            {"temp_dir": temp_dir, "redis": args.redis},
        )
        results["parallel"].append(row)
        print(f"  {driver} {args.parallel} × {args.parallel_size} MiB: {row}")


def main():
    """Run every measurement and print the tables."""
    args = parse_args()
    parts = urlsplit("mysql://" + args.mysql)
    database = f"lockbox_bench_{uuid.uuid4().hex[:8]}"
    server = (parts.hostname, parts.port or 3306, parts.username or "root", database)

    import MySQLdb

    admin = MySQLdb.connect(host=server[0], port=server[1], user=server[2])
    admin.cursor().execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    blocks = random_blocks()
    results = {"raw": [], "app": [], "parallel": [], "machine": os.uname().nodename}
    try:
        with tempfile.TemporaryDirectory(prefix="lockbox-bench-") as temp_dir:
            single_stream_rows(args, server, blocks, temp_dir, results)
            concurrency_rows(args, server, blocks, temp_dir, results)
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
    lines += ["", *target_rows(results)]
    if results.get("parallel"):
        lines += ["", parallel_report(results["parallel"])]
    return "\n".join(lines)


# The figures these rows started from, measured the same way before the work
# that raised them (docs/benchmarks.md).
MYSQLCLIENT_UPLOAD_BEFORE = 0.08
TARGETS = {"mysqlclient upload": 0.15, "10 MiB download": 0.50}


def target_rows(results) -> list[str]:
    """The two rows with targets, each a ratio measured in this run: the
    mysqlclient upload against MariaDB Connector's raw insert, and the
    10 MiB download against the raw read of the same rows (same driver)."""
    lines = [
        "| row | app MiB/s | raw MiB/s | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    raw = {(r["driver"], r["size_mib"]): r for r in results["raw"]}
    for row in results["app"]:
        size = row["size_mib"]
        connector = raw.get(("mariadbconnector", size))
        if row["driver"] == "mysqlclient" and connector:
            ratio = row["upload_mib_s"] / connector["insert_mib_s"]
            goal = max(TARGETS["mysqlclient upload"], 2 * MYSQLCLIENT_UPLOAD_BEFORE)
            verdict = "met" if ratio >= goal else "missed"
            lines.append(
                f"| {size} MiB upload through mysqlclient ÷ Connector's raw insert "
                f"| {row['upload_mib_s']:.0f} | {connector['insert_mib_s']:.0f} "
                f"| **{ratio:.0%}** | ≥ {goal:.0%} (2× {MYSQLCLIENT_UPLOAD_BEFORE:.0%},"
                f" ≥ 15 %): {verdict} |"
            )
    for row in results["app"]:
        same = raw.get((row["driver"], row["size_mib"]))
        if row["size_mib"] == 10 and same:
            ratio = row["download_mib_s"] / same["read_mib_s"]
            goal = TARGETS["10 MiB download"]
            verdict = "met" if ratio >= goal else "missed"
            lines.append(
                f"| 10 MiB download ({row['driver']}) ÷ raw read of the same rows "
                f"| {row['download_mib_s']:.0f} | {same['read_mib_s']:.0f} "
                f"| **{ratio:.0%}** | ≥ {goal:.0%}: {verdict} |"
            )
    return lines


def parallel_report(rows):
    """The concurrency rows: aggregate MiB/s raw and through the app, per driver."""
    first = rows[0]
    gunicorn = first["gunicorn"]
    n = first["streams"]
    lines = [
        f"{n} transfers at once, {first['size_mib']} MiB each; gunicorn.conf.py as "
        f"committed: {gunicorn['workers']} {gunicorn['worker_class']} workers × "
        f"{gunicorn['threads']} threads ({gunicorn['worker_pids']} worker processes "
        "seen); raw and app taking turns, medians of "
        f"{first['rounds']} round(s). Aggregate MiB/s: all bytes ÷ wall time from "
        "the first start to the last end.",
        "",
        f"| driver | raw {n}× writers MiB/s | app {n}× uploads MiB/s | app ÷ raw "
        f"| raw {n}× readers MiB/s | app {n}× downloads MiB/s | app ÷ raw "
        "| max worker RSS growth, up / down MiB | ≤ 64 MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        verdict = "met" if row["growth_limit_met"] else "missed"
        lines.append(
            f"| {row['driver']} | {row['raw_write_mib_s']:.0f} "
            f"| {row['app_upload_mib_s']:.0f} | {row['upload_ratio']:.0%} "
            f"| {row['raw_read_mib_s']:.0f} | {row['app_download_mib_s']:.0f} "
            f"| {row['download_ratio']:.0%} "
            f"| {row['max_worker_growth_mib']:.1f} "
            f"({row['upload_max_worker_growth_mib']:.1f} / "
            f"{row['download_max_worker_growth_mib']:.1f}) | {verdict} |"
        )
    lines += ["", "Per worker, transfers it served at once → its RSS growth:", ""]
    for row in rows:
        for phase in ("upload", "download"):
            served = ", ".join(
                f"{worker[phase + '_streams_at_once']} → "
                f"{worker[phase + '_growth_mib']:.1f} MiB"
                for worker in row["workers"]
            )
            lines.append(f"- {row['driver']}, {phase}s: {served}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
