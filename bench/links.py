"""A share link's download against the owner's download of the same file, in
the same run: what the link's checks, its claim and its access log row cost.

    .venv/bin/python bench/links.py                 # 64 MiB, 9 rounds
    .venv/bin/python bench/links.py --size 16 --rounds 5   # quicker

gunicorn with the shipped configuration serves a fresh SQLite database (in a
temporary folder) with one user and one file of ``--size`` MiB, and a share
link to it. The owner's download (``/files/<id>/download`` with the token) and
the link's (``/s/<link>/download``, bringing the claim its first download
handed out, so that each timed one resumes without counting and writes its
access log row when it closes) take turns, ``--rounds`` each after one
untimed of each; each body is read into one reused buffer, and one download
of each is checked byte for byte by its SHA-256. The medians, their ratio
(the link's speed over the owner's) and the access log's row count go to
``bench/results/links.json`` (``--output``) and are printed.

Target: the link's median speed at least TARGET_RATIO of the owner's, measured
in the same run (the machine's noise falls on both). Exit status 0 when met,
1 when missed, 2 when the run could not be set up.
"""

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import SetupError, machine  # noqa: E402
from bench.run import (  # noqa: E402
    CHUNK,
    MIB,
    connect_http,
    expected_sha256,
    prepare_app_database,
    random_blocks,
    sign_in,
    upload,
)
from harness.server import LiveServer  # noqa: E402

TARGET_RATIO = 0.9
SECRET_KEY = "links-bench-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH"


def timed_get(port, path, cookie=None, digest=None):
    """GET ``path`` read into one reused buffer; (seconds, sha256 or None)."""
    connection = connect_http(port)
    headers = {"Cookie": cookie} if cookie else {}
    started = time.perf_counter()
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        raise SetupError(f"GET {path.split('?')[0]} answered {response.status}")
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while count := response.readinto(buffer):
        if digest is not None:
            digest.update(view[:count])
    seconds = time.perf_counter() - started
    connection.close()
    return seconds, digest.hexdigest() if digest is not None else None


def run(size_mib: int, rounds: int) -> dict:
    """The measurement; its results."""
    size = size_mib * MIB
    blocks = random_blocks()
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'lockbox.db'}"
        env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url}
        prepare_app_database(url, env)
        with LiveServer(env, shipped=True) as server:
            port = int(server.url.rsplit(":", 1)[1])
            token = sign_in(server)
            _, body = upload(port, token, blocks, size)
            file_id = body["id"]
            made = requests.post(
                f"{server.url}/files/{file_id}/shares",
                json={},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ).json()
            link = "/s/" + made["url"].split("/s/", 1)[1] + "/download"
            # The first download counts and hands out the claim.
            first = requests.get(server.url + link, timeout=600)
            claim = first.cookies.get("lockbox_claim")
            if not claim:
                raise SetupError("the link's first download handed out no claim")
            cookie = f"lockbox_claim={claim}"
            owner = f"/files/{file_id}/download?token={token}"
            want = expected_sha256(blocks, size)
            for path, sent in ((owner, None), (link, cookie)):
                _, got = timed_get(port, path, sent, hashlib.sha256())
                if got != want:
                    raise SetupError(f"{path.split('?')[0]} sent other bytes")
            times = {"owner": [], "link": []}
            for _ in range(rounds):
                times["owner"].append(timed_get(port, owner)[0])
                times["link"].append(timed_get(port, link, cookie)[0])
            logged = requests.get(
                f"{server.url}/shares/{made['id']}/accesses",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ).json()["items"]
    speeds = {
        kind: size / MIB / statistics.median(values) for kind, values in times.items()
    }
    return {
        "machine": machine(),
        "size_mib": size_mib,
        "rounds": rounds,
        "owner_mib_s": round(speeds["owner"], 1),
        "link_mib_s": round(speeds["link"], 1),
        "ratio": round(speeds["link"] / speeds["owner"], 3),
        "target_ratio": TARGET_RATIO,
        "access_log_rows": len(logged),
        "seconds": {
            kind: [round(v, 4) for v in values] for kind, values in times.items()
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="MiB (default 64)")
    parser.add_argument("--rounds", type=int, default=9, help="timed each (default 9)")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "links.json"
    )
    args = parser.parse_args(argv)
    try:
        results = run(args.size, args.rounds)
    except SetupError as error:
        print(f"The links bench did not run through: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    met = results["ratio"] >= TARGET_RATIO
    print(
        f"{args.size} MiB, median of {args.rounds}: owner {results['owner_mib_s']} "
        f"MiB/s, link {results['link_mib_s']} MiB/s ({results['ratio']:.0%}, "
        f"target {TARGET_RATIO:.0%}: {'met' if met else 'missed'}); "
        f"{results['access_log_rows']} access log rows"
    )
    print(f"JSON: {args.output}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
