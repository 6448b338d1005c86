"""Lockbox through nginx on a three-node Galera cluster, against the same
topology on one MariaDB server, in one run:

    .venv/bin/python bench/cluster.py            # about three minutes
    .venv/bin/python bench/cluster.py --size-mib 32 --seconds 5   # quicker

Three topologies are started one after the other (harness/topology.py, as
``scripts/cluster`` starts them: two gunicorn instances behind nginx):

- ``single``: both instances on one plain MariaDB server;
- ``galera``: each instance on its own Galera node, causal reads on
  (``GALERA_SYNC_WAIT=1``, the default);
- ``galera, no causal reads``: the same with ``GALERA_SYNC_WAIT=0``, to show
  what causal reads cost and what they buy.

For each: upload and download throughput through nginx (``--uploads`` files
of ``--size-mib``, sent and fetched one at a time, MiB/s), ``GET /files``
requests a second under wrk through nginx, and how many of 200 reads made on
the other instance right after an upload was acknowledged missed the file.
Printed as Markdown, and written to bench/results/cluster.json.
"""

import argparse
import hashlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.galera import galera_available  # noqa: E402
from harness.topology import FIRST_USER, Topology  # noqa: E402

MIB = 1024 * 1024
VISIBILITY_FILE = bytes(range(256)) * (4 * MIB // 256)
SETUPS = [
    ("single", {"single": True}, {}),
    ("galera", {}, {}),
    ("galera, no causal reads", {}, {"GALERA_SYNC_WAIT": "0"}),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--uploads", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="wrk's run")
    parser.add_argument("--connections", type=int, default=16)
    return parser.parse_args(argv)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def transfer_rates(
    url: str, apps: list, token: str, size: int, count: int
) -> tuple[float, float]:
    """Median upload and download MiB/s of ``count`` files of ``size`` bytes."""
    block = bytes(range(256)) * (MIB // 256)
    uploads, downloads = [], []
    for number in range(count):

        def body(number=number):
            for index in range(size // MIB):
                yield block[(index + number) % 256 :] + block[: (index + number) % 256]

        started = time.perf_counter()
        answer = requests.post(
            url + "/uploads",
            data=body(),
            headers={
                **bearer(token),
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(size),
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=600,
        )
        uploads.append(size / MIB / (time.perf_counter() - started))
        assert answer.status_code == 201, answer.text
        file_id = answer.headers["Lockbox-File-Id"]
        # Without causal reads the file may not be visible yet through the
        # other instance: wait for it (visibility is measured apart).
        for app in apps:
            while (
                requests.get(
                    f"{app.url}/files/{file_id}", headers=bearer(token)
                ).status_code
                == 404
            ):
                time.sleep(0.01)
        started = time.perf_counter()
        digest = hashlib.sha256()
        with requests.get(
            f"{url}/files/{file_id}/download", headers=bearer(token), stream=True
        ) as download:
            assert download.status_code == 200, download.status_code
            for piece in download.iter_content(MIB):
                digest.update(piece)
        downloads.append(size / MIB / (time.perf_counter() - started))
    return statistics.median(uploads), statistics.median(downloads)


def listing_rate(url: str, token: str, seconds: int, connections: int) -> float:
    """GET /files requests a second under wrk (all answers must be 200)."""
    completed = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Authorization: Bearer {token}",
            url + "/files",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    if "Non-2xx" in completed.stdout or "Socket errors" in completed.stdout:
        raise RuntimeError(f"wrk saw errors:\n{completed.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", completed.stdout)[1])


def visibility_misses(topology, token: str, tries: int = 200) -> int:
    """Reads on the other instance, right after an acknowledged upload of
    4 MiB (chunk rows the other node must apply first), that did not find the
    file."""
    first, second = topology.apps
    misses = 0
    for number in range(tries):
        writer, reader = (first, second) if number % 2 else (second, first)
        answer = requests.post(
            writer.url + "/upload",
            files={"inputFile": ("v.bin", VISIBILITY_FILE + f"{number}".encode())},
            headers=bearer(token),
        )
        file_id = answer.json()["id"]
        seen = requests.get(f"{reader.url}/files/{file_id}", headers=bearer(token))
        misses += seen.status_code != 200
    return misses


def measure(name, topology_options, env, args, scratch: Path) -> dict:
    with Topology(scratch / name.split(",")[0], env=env, **topology_options) as top:
        url = top.nginx.url
        token = requests.get(
            url + "/login", auth=(FIRST_USER, top.first_password), timeout=30
        ).json()["token"]
        for number in range(50):
            requests.post(
                url + "/upload",
                files={"inputFile": (f"small-{number}.txt", b"x" * 100)},
                headers=bearer(token),
            )
        upload, download = transfer_rates(
            url, top.apps, token, args.size_mib * MIB, args.uploads
        )
        listing = listing_rate(url, token, args.seconds, args.connections)
        misses = visibility_misses(top, token)
        return {
            "upload_mib_s": round(upload, 1),
            "download_mib_s": round(download, 1),
            "files_requests_s": round(listing),
            "visibility_misses_of_200": misses,
        }


def report(results: dict) -> str:
    base = results["single"]
    lines = [
        "| topology | upload MiB/s | download MiB/s | `GET /files` req/s "
        "| missed reads of 200 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in results.items():
        ratios = [
            f"{row[key]} ({row[key] / base[key]:.0%})" if base[key] else str(row[key])
            for key in ("upload_mib_s", "download_mib_s", "files_requests_s")
        ]
        lines.append(
            f"| {name} | {' | '.join(ratios)} | {row['visibility_misses_of_200']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = galera_available()
    if problem:
        print(f"Cannot run: {problem}", file=sys.stderr)
        return 2
    results = {}
    with tempfile.TemporaryDirectory(prefix="lockbox-bench-cluster-") as scratch:
        for name, options, env in SETUPS:
            print(f"measuring {name}...", file=sys.stderr)
            results[name] = measure(name, options, env, args, Path(scratch))
    print(report(results))
    out = ROOT / "bench" / "results" / "cluster.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
