"""A link to several files downloaded as one zip against the owner's plain
downloads of the same files, in the same run: the zip's speed, and what the
gunicorn worker's memory does while it streams.

    .venv/bin/python bench/zip.py                   # 8 files, 2 GiB in all, 3 rounds
    .venv/bin/python bench/zip.py --zip-size 256    # 8 files of 32 MiB, quicker

gunicorn with the shipped configuration (its one worker, as sign-in limits
are kept in memory) serves a fresh SQLite database (in a temporary folder)
with one user, ``--files`` files of ``--zip-size`` MiB in all, each made of
random blocks of its own, and one link to all of them (``POST /shares``).
First, untimed, the owner's downloads of the files one after the other
(``/files/<id>/download`` with the token as a Bearer header), each checked
by its SHA-256; then the link's first download (``/s/<link>/download``,
which counts), written to a temporary file and unzipped: every member must
be stored, not compressed, and hold its file's bytes (SHA-256, in the
link's order). Then the plain downloads and the zip (through the
``Content-Location`` its first download handed out, so each timed one
resumes without counting) take turns, ``--rounds`` each; each body is read
into one reused buffer. Both speeds are the files' bytes over the median
time (all the plain downloads of a round together; the zip's few hundred
bytes of headers left out).

The worker's RSS is sampled from /proc/<pid>/status (VmRSS) every 10 ms
during each download; a kind's growth is the worker's largest RSS during any
of its downloads (checked or timed) above its RSS once the files were
uploaded and the link made. RSS seldom goes back down, so the plain
downloads come first, before any zip. The results go to
``bench/results/zip.json`` (``--output``) and are printed.

Target: the worker grows by at most RSS_LIMIT during the zip, whatever the
zip's size (it streams a chunk at a time). The zip's median speed as a share
of the plain downloads', measured in the same run, is reported beside it:
the CRC-32 each member carries is work a plain download does not do
(docs/benchmarks.md). Exit status 0 when the target is met, 1 when missed, 2
when the run could not be set up.
"""

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import SetupError, machine  # noqa: E402
from bench.run import (  # noqa: E402
    CHUNK,
    MIB,
    WorkerWatch,
    connect_http,
    expected_sha256,
    prepare_app_database,
    random_blocks,
    sign_in,
    upload,
)
from harness.server import LiveServer, proc_status  # noqa: E402

RSS_LIMIT = 64 * MIB
SECRET_KEY = "zip-bench-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"


def get(port, path, headers, take=None):
    """GET ``path``, its body read into one reused buffer (each piece also
    handed to ``take`` when given); (seconds, bytes read, the answer's headers).

    Anything but a 200 carrying all of its Content-Length is a SetupError.
    """
    connection = connect_http(port)
    started = time.perf_counter()
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        raise SetupError(f"GET {path.split('?')[0]} answered {response.status}")
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    received = 0
    while count := response.readinto(buffer):
        received += count
        if take is not None:
            take(view[:count])
    seconds = time.perf_counter() - started
    connection.close()
    if received != int(response.getheader("Content-Length", -1)):
        raise SetupError(f"GET {path.split('?')[0]} ended after {received} bytes")
    return seconds, received, response.headers


def upload_files(port, token, count, size):
    """``count`` files of ``size`` bytes, each of random blocks of its own;
    their ids and SHA-256s, each checked against the one the app stored."""
    uploaded = []
    for _ in range(count):
        blocks = random_blocks()
        _, body = upload(port, token, blocks, size)
        sha256 = expected_sha256(blocks, size)
        if body["sha256"] != sha256:
            raise SetupError(f"file {body['id']} was stored with another SHA-256")
        uploaded.append((body["id"], sha256))
    return uploaded


def check_zip(path, digests):
    """The zip at ``path`` holds, stored, one member per SHA-256 in
    ``digests``, in their order (zipfile checks each member's CRC as it reads)."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) != len(digests):
            raise SetupError(f"the zip has {len(members)} members, not {len(digests)}")
        for member, want in zip(members, digests, strict=True):
            if member.compress_type != zipfile.ZIP_STORED:
                raise SetupError(f"{member.filename} is compressed in the zip")
            digest = hashlib.sha256()
            with archive.open(member) as stream:
                while piece := stream.read(CHUNK):
                    digest.update(piece)
            if digest.hexdigest() != want:
                raise SetupError(f"{member.filename} holds other bytes in the zip")


def run(total_mib: int, count: int, rounds: int) -> dict:
    """The measurement; its results."""
    size = total_mib * MIB // count
    started_on = machine()
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'lockbox.db'}"
        env = {
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": url,
            "MAX_CONTENT_LENGTH": str(size + MIB),
        }
        prepare_app_database(url, env)
        with LiveServer(env, shipped=True) as server:
            port = server.port
            workers = server.worker_pids()
            if len(workers) != 1:
                raise SetupError(f"gunicorn runs {len(workers)} workers, not one")
            [worker] = workers
            token = sign_in(server)
            bearer = {"Authorization": f"Bearer {token}"}
            uploaded = upload_files(port, token, count, size)
            made = requests.post(
                f"{server.url}/shares",
                json={"file_ids": [file_id for file_id, _ in uploaded]},
                headers=bearer,
                timeout=30,
            )
            if made.status_code != 201:
                raise SetupError(f"POST /shares answered {made.status_code}")
            link = "/s/" + made.json()["url"].split("/s/", 1)[1] + "/download"
            idle = proc_status(worker, "VmRSS")
            peaks = {"plain": 0, "zip": 0}
            # Untimed and checked, the plain downloads first: RSS seldom goes
            # back down, and the zip's must not count as theirs.
            with WorkerWatch(worker, scratch) as watch:
                for file_id, sha256 in uploaded:
                    digest = hashlib.sha256()
                    get(port, f"/files/{file_id}/download", bearer, digest.update)
                    if digest.hexdigest() != sha256:
                        raise SetupError(f"file {file_id} came down with other bytes")
            peaks["plain"] = watch.peak_rss
            # The link's first download counts and hands out the claim.
            saved = Path(scratch) / "download.zip"
            with saved.open("wb") as sink, WorkerWatch(worker, scratch) as watch:
                _, zip_bytes, headers = get(port, link, {}, sink.write)
            peaks["zip"] = watch.peak_rss
            check_zip(saved, [sha256 for _, sha256 in uploaded])
            saved.unlink()
            claimed = urlsplit(headers.get("Content-Location", ""))
            if "claim=" not in claimed.query:
                raise SetupError("the link's first download handed out no claim")
            resume = f"{claimed.path}?{claimed.query}"
            times = {"plain": [], "zip": []}
            for _ in range(rounds):
                with WorkerWatch(worker, scratch) as watch:
                    times["plain"].append(
                        sum(
                            get(port, f"/files/{file_id}/download", bearer)[0]
                            for file_id, _ in uploaded
                        )
                    )
                peaks["plain"] = max(peaks["plain"], watch.peak_rss)
                with WorkerWatch(worker, scratch) as watch:
                    times["zip"].append(get(port, resume, {})[0])
                peaks["zip"] = max(peaks["zip"], watch.peak_rss)
    total = size * count
    speeds = {
        kind: total / MIB / statistics.median(values) for kind, values in times.items()
    }
    return {
        "machine": started_on,
        "files": count,
        "file_size_mib": round(size / MIB, 3),
        "total_mib": round(total / MIB, 3),
        "zip_bytes": zip_bytes,
        "rounds": rounds,
        "plain_mib_s": round(speeds["plain"], 1),
        "zip_mib_s": round(speeds["zip"], 1),
        "ratio": round(speeds["zip"] / speeds["plain"], 3),
        "idle_rss_mib": round(idle / MIB, 1),
        "plain_rss_growth_mib": round((peaks["plain"] - idle) / MIB, 1),
        "zip_rss_growth_mib": round((peaks["zip"] - idle) / MIB, 1),
        "rss_limit_mib": RSS_LIMIT // MIB,
        "seconds": {
            kind: [round(v, 4) for v in values] for kind, values in times.items()
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--zip-size", type=int, default=2048, help="MiB in all (default 2048)"
    )
    parser.add_argument("--files", type=int, default=8, help="in the link (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="timed each (default 3)")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "zip.json"
    )
    args = parser.parse_args(argv)
    if args.files < 2 or args.zip_size < args.files:
        parser.error("--files at least 2, and --zip-size at least 1 MiB a file")
    started = time.monotonic()
    try:
        results = run(args.zip_size, args.files, args.rounds)
    except SetupError as error:
        print(f"The zip bench did not run through: {error}", file=sys.stderr)
        return 2
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    small = results["zip_rss_growth_mib"] <= RSS_LIMIT / MIB
    print(
        f"{results['files']} files, {results['total_mib']:g} MiB, median of "
        f"{args.rounds}: plain {results['plain_mib_s']} MiB/s, zip "
        f"{results['zip_mib_s']} MiB/s ({results['ratio']:.0%} of plain); "
        f"worker RSS growth "
        f"{results['zip_rss_growth_mib']} MiB during the zip (limit "
        f"{RSS_LIMIT // MIB} MiB: {'met' if small else 'missed'}), "
        f"{results['plain_rss_growth_mib']} MiB during the plain downloads; "
        f"every file's SHA-256 checked, alone and in the zip; "
        f"{results['wall_seconds']} s in all"
    )
    print(f"JSON: {args.output}")
    return 0 if small else 1


if __name__ == "__main__":
    sys.exit(main())
