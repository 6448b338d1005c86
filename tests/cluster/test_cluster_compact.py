"""`flask storage compact` and `flask storage rekey` on a three-node Galera
cluster (harness/topology.py).

The chunk table's rebuild is a schema change. Under TOI, Galera's default,
one command rebuilds it on every node; under RSU, on the node it runs against
alone. Either way every node keeps the same rows. A rekey through one node
while the others serve leaves every node with the same sealed rows.

Skipped only where Galera is missing, and never in CI.
"""

import base64
import hashlib
import os
import subprocess
import sys
import threading

import MySQLdb
import pytest
import requests

import space
from harness.server import ROOT
from helpers import (
    MIB,
    STORAGE_KEY,
    STORAGE_KEYS,
    bearer,
    download_digest,
    make_app,
    post_file,
    random_bytes,
    sign_in,
)
from models import db

pytestmark = pytest.mark.slow

DATABASE = "lockbox"
# The instances seal under the suite's key and hold a second one, added ahead
# of being made current (the first step of rolling a key).
NEW_KEY = base64.b64encode(bytes(range(100, 132))).decode()
BOTH_KEYS = f"{STORAGE_KEYS},test-2:{NEW_KEY}"
NEW_CURRENT = f"*test-2:{NEW_KEY},{STORAGE_KEYS.lstrip('*')}"
CLUSTER_ENV = {"STORAGE_KEYS": BOTH_KEYS}


def chunk_table(node) -> dict:
    """file_chunk on one node, read as root once the node has applied what
    the cluster committed: its tablespace (id and file size), its rows and
    their checksum."""
    connection = MySQLdb.connect(
        host="127.0.0.1", port=node.port, user="root", database=DATABASE
    )
    try:
        cursor = connection.cursor()
        cursor.execute("SET SESSION wsrep_sync_wait = 1")
        cursor.execute("SELECT COUNT(*) FROM file_chunk")
        (rows,) = cursor.fetchone()
        cursor.execute("CHECKSUM TABLE file_chunk")
        _, checksum = cursor.fetchone()
        cursor.execute(
            "SELECT SPACE, FILE_SIZE FROM information_schema.INNODB_SYS_TABLESPACES"
            " WHERE NAME = %s",
            (f"{DATABASE}/file_chunk",),
        )
        tablespace, size = cursor.fetchone()
        cursor.execute("SELECT DISTINCT key_id FROM file_chunk")
        keys = {key_id for (key_id,) in cursor.fetchall()}
    finally:
        connection.close()
    return {
        "tablespace": tablespace,
        "size": size,
        "rows": rows,
        "checksum": checksum,
        "keys": keys,
    }


def kept_and_deleted(app, token, count=6) -> dict:
    """One file kept, and ``count`` of 4 MiB stored then deleted, through
    ``app`` (all stored before any is deleted, so that the chunk table grows
    by all of them): the kept file's metadata."""
    kept = post_file(app.url, token, random_bytes(MIB, seed=100)).json()
    file_ids = []
    for seed in range(count):
        answer = post_file(app.url, token, random_bytes(4 * MIB, seed=seed))
        assert answer.status_code == 201, answer.text
        file_ids.append(answer.json()["id"])
    for file_id in file_ids:
        gone = requests.delete(
            f"{app.url}/files/{file_id}", headers=bearer(token), timeout=30
        )
        assert gone.status_code == 204
    return kept


def test_a_compaction_under_toi_rebuilds_the_chunk_table_on_every_node(cluster):
    first, second = cluster.apps
    token = sign_in(first)["token"]
    kept = kept_and_deleted(first, token)
    nodes = cluster.galera.nodes
    before = [chunk_table(node) for node in nodes]

    output = cluster.flask(
        "storage",
        "compact",
        "--min-free",
        "0",
        "--galera-method",
        "toi",
        node=nodes[0],
    )

    assert output.startswith("Rebuilt file_chunk in ")
    assert "wsrep_OSU_method=TOI" in output
    after = [chunk_table(node) for node in nodes]
    for old, new in zip(before, after, strict=True):
        assert new["tablespace"] != old["tablespace"]  # a new .ibd on each node
        assert new["size"] < old["size"] - 16 * MIB
    assert len({(table["rows"], table["checksum"]) for table in before + after}) == 1
    # The cluster runs with encryption at rest on, as the whole suite does:
    # every node holds the chunks sealed.
    assert all(table["keys"] and None not in table["keys"] for table in after)
    # Read through the other node, the kept file is whole.
    assert download_digest(second.url, token, kept["id"]) == (200, kept["sha256"])
    assert cluster.galera.size() == 3


def test_a_compaction_under_rsu_rebuilds_the_chunk_table_on_its_node_only(cluster):
    first, second = cluster.apps
    token = sign_in(first)["token"]
    kept = kept_and_deleted(first, token)
    nodes = cluster.galera.nodes
    before = [chunk_table(node) for node in nodes]

    # What `storage compact --galera-method rsu` runs, on the app's own
    # account as the command does; on a Galera node, never without a method.
    app = make_app(
        cluster.database_url(nodes[1]),
        STORAGE_KEYS={"test-1": STORAGE_KEY, "test-2": base64.b64decode(NEW_KEY)},
        STORAGE_KEY_CURRENT="test-1",
    )
    try:
        with app.app_context():
            with pytest.raises(space.ChooseMethod, match="say how to rebuild"):
                space.compact(0)
            outcome = space.compact(0, galera_method="RSU")
            # For the rebuild alone: the pooled connection is back on TOI.
            assert (
                db.session.execute(db.text("SELECT @@SESSION.wsrep_OSU_method"))
            ).scalar() == "TOI"
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

    assert "wsrep_OSU_method=RSU: rebuilt on this node only" in outcome
    after = [chunk_table(node) for node in nodes]
    rebuilt = [
        new["tablespace"] != old["tablespace"]
        for old, new in zip(before, after, strict=True)
    ]
    assert rebuilt == [False, True, False]
    assert after[1]["size"] < before[1]["size"] - 16 * MIB
    assert len({(table["rows"], table["checksum"]) for table in before + after}) == 1
    # The cluster runs with encryption at rest on, as the whole suite does:
    # every node holds the chunks sealed.
    assert all(table["keys"] and None not in table["keys"] for table in after)
    nodes[1].wait_synced(timeout=30)
    assert cluster.galera.size() == 3
    assert download_digest(second.url, token, kept["id"]) == (200, kept["sha256"])


def test_a_rekey_through_one_node_while_the_cluster_serves(cluster):
    first, second = cluster.apps
    token = sign_in(first)["token"]
    nodes = cluster.galera.nodes
    contents = {}
    for seed in range(4):
        content = random_bytes(2 * MIB + seed, seed=200 + seed)
        answer = post_file(first.url, token, content)
        assert answer.status_code == 201, answer.text
        contents[answer.json()["id"]] = hashlib.sha256(content).hexdigest()
    stop, failures = threading.Event(), []

    def download_through_the_other_node():
        while not stop.is_set():
            for file_id, digest in list(contents.items()):
                got = download_digest(second.url, token, file_id)
                if got != (200, digest):
                    failures.append((file_id, got))

    def upload_through_the_first():
        seed = 300
        while not stop.is_set():
            content = random_bytes(MIB + seed, seed=seed)
            answer = post_file(first.url, token, content)
            if answer.status_code != 201:
                failures.append(("upload", answer.status_code, answer.text))
                continue
            contents[answer.json()["id"]] = hashlib.sha256(content).hexdigest()
            seed += 1

    workers = [
        threading.Thread(target=download_through_the_other_node),
        threading.Thread(target=upload_through_the_first),
    ]
    for worker in workers:
        worker.start()
    try:
        # Re-sealed under test-2 through the second node, while the first
        # instance goes on sealing new files under test-1 (a step out of the
        # documented order, on purpose: the rows stay right).
        during = rekey(cluster, nodes[1])
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
    assert failures == []
    assert "chunks re-sealed" in during.stdout
    # What the first instance sealed meanwhile goes in the second run.
    again = rekey(cluster, nodes[2])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Every chunk is sealed under key 'test-2'" in again.stdout
    assert "Key 'test-1' seals nothing:" in again.stdout
    tables = [chunk_table(node) for node in nodes]
    assert all(table["keys"] == {"test-2"} for table in tables)
    assert len({(table["rows"], table["checksum"]) for table in tables}) == 1
    for file_id, digest in contents.items():
        assert download_digest(first.url, token, file_id) == (200, digest)
    assert cluster.galera.size() == 3


def rekey(cluster, node) -> subprocess.CompletedProcess:
    """`flask storage rekey` against ``node``, with test-2 current."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "storage", "rekey"],
        cwd=ROOT,
        env={**os.environ, **cluster.app_env(node), "STORAGE_KEYS": NEW_CURRENT},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
