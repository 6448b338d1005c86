"""`flask storage compact` on a three-node Galera cluster (harness/topology.py):
the chunk table's rebuild is a schema change. Under TOI, Galera's default, one
command rebuilds it on every node; under RSU, on the node it runs against
alone. Either way every node keeps the same rows.

Skipped only where Galera is missing, and never in CI.
"""

import MySQLdb
import pytest
import requests

import space
from helpers import (
    MIB,
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
    finally:
        connection.close()
    return {"tablespace": tablespace, "size": size, "rows": rows, "checksum": checksum}


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
    app = make_app(cluster.database_url(nodes[1]))
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
    nodes[1].wait_synced(timeout=30)
    assert cluster.galera.size() == 3
    assert download_digest(second.url, token, kept["id"]) == (200, kept["sha256"])
