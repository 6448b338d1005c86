"""storage.py: a file's bytes appended in pieces, at any offset, become the chunk
rows of one upload; an undone append leaves the file as it was."""

import hashlib
import itertools
import random

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

import storage
from helpers import (
    BIG,
    AuthActions,
    multipart_upload,
    opened_chunks,
    random_bytes,
    stored_bytes,
    uploaded,
)
from models import FileChunk, StoredFile, db

CHUNK = 4096
pytestmark = pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": CHUNK}])


@pytest.fixture
def new_file(app):
    """A function making an empty hidden file of alice's; inside an app context."""
    owner_id = AuthActions(app, None).create_user()
    with app.test_request_context():
        yield lambda: storage.begin(owner_id, "f.bin", "application/octet-stream")


def rows(file_id) -> list[tuple[int, bytes]]:
    """The file's chunk rows, in order, as committed now, opened."""
    return opened_chunks(file_id)


def append(stored_file, data: bytes, keep=True, record_progress=True):
    """One append of ``data`` at the file's end, in 1000-byte writes."""
    writer = storage.ChunkWriter(stored_file, record_progress=record_progress)
    for offset in range(0, len(data), 1000):
        writer.write(data[offset : offset + 1000])
    writer.finish(keep=keep)


def stored_row(file_id) -> StoredFile:
    """The file's row as the database has it now (not the session's copy)."""
    db.session.rollback()
    return db.session.get(StoredFile, file_id)


@pytest.mark.parametrize(
    "sizes",
    [(1, CHUNK - 1), (1000,), (CHUNK - 1,), (CHUNK,), (CHUNK + 1,), (3 * CHUNK + 7, 2)],
)
def test_appending_in_pieces_gives_the_rows_of_one_upload(new_file, sizes):
    content = random.Random(sizes[0]).randbytes(5 * CHUNK + 123)
    whole, pieces = new_file(), new_file()
    append(whole, content)
    offset = 0
    for size in itertools.cycle(sizes):
        if offset >= len(content):
            break
        append(pieces, content[offset : offset + size])
        offset += size
    assert rows(pieces.id) == rows(whole.id)
    assert [len(data) for _, data in rows(whole.id)] == [CHUNK] * 5 + [123]
    assert stored_row(pieces.id).size == len(content)
    finished = storage.finish(stored_row(pieces.id))
    assert finished.sha256 == hashlib.sha256(content).hexdigest()
    assert finished.hash_state is None and finished.complete


def test_an_undone_append_leaves_the_file_as_it_was(new_file):
    content = random.Random(1).randbytes(2 * CHUNK + 100)
    stored_file = new_file()
    append(stored_file, content)
    before = rows(stored_file.id)
    append(stored_file, b"x" * (3 * CHUNK), keep=False, record_progress=False)
    after = stored_row(stored_file.id)
    assert rows(stored_file.id) == before
    assert after.size == len(content)
    # The next append goes on from where the file really ends.
    append(after, b"tail")
    final = storage.finish(stored_row(stored_file.id))
    assert final.sha256 == hashlib.sha256(content + b"tail").hexdigest()


def test_a_dropped_writer_without_recorded_progress_counts_for_nothing(new_file):
    stored_file = new_file()
    writer = storage.ChunkWriter(stored_file, record_progress=False)
    writer.write(b"y" * (9 * CHUNK))
    writer.close()  # dropped before finish, as a crash would drop it
    assert stored_row(stored_file.id).size == 0
    append(stored_row(stored_file.id), b"z" * 10)
    # Rows it committed may remain past the end; only the first `size` bytes
    # count, and the next append replaced what it needed.
    assert rows(stored_file.id)[0] == (0, b"z" * 10)
    final = storage.finish(stored_row(stored_file.id))
    assert (final.size, final.sha256) == (10, hashlib.sha256(b"z" * 10).hexdigest())


def test_an_empty_append_changes_nothing(new_file):
    stored_file = new_file()
    append(stored_file, b"abc")
    append(stored_row(stored_file.id), b"")
    assert rows(stored_file.id) == [(0, b"abc")]
    assert stored_row(stored_file.id).size == 3


def test_a_digest_that_does_not_match_is_a_400(new_file):
    stored_file = new_file()
    append(stored_file, b"abc")
    with pytest.raises(storage.ApiError) as refused:
        storage.finish(stored_row(stored_file.id), expected=["0" * 64])
    assert refused.value.code == 400


def test_a_second_writer_at_the_same_offset_keeps_nothing(new_file):
    stored_file = new_file()
    first = storage.ChunkWriter(stored_file, record_progress=True)
    second = storage.ChunkWriter(stored_file, record_progress=True)
    first_bytes = random.Random(1).randbytes(CHUNK + 10)
    first.write(first_bytes)
    first.finish()
    second.write(random.Random(2).randbytes(2 * CHUNK))
    with pytest.raises(storage.ConcurrentAppend):
        second.finish()
    second.close()
    assert stored_row(stored_file.id).size == CHUNK + 10
    assert b"".join(data for _, data in rows(stored_file.id)) == first_bytes


def test_a_writer_that_lost_the_race_midway_stops_and_keeps_nothing_of_its_own(
    new_file,
):
    stored_file = new_file()
    slow = storage.ChunkWriter(stored_file, record_progress=True)
    append(stored_file, b"w" * (CHUNK * 2))
    with pytest.raises(storage.ConcurrentAppend):
        # Enough chunks for the slow writer to commit, and find the file moved.
        for _ in range(storage.CHUNKS_PER_COMMIT * 2):
            slow.write(b"s" * CHUNK)
        slow.finish()
    slow.close()
    assert stored_row(stored_file.id).size == 2 * CHUNK
    assert b"".join(data for _, data in rows(stored_file.id)) == b"w" * (2 * CHUNK)


def test_chunks_of_a_commit_the_cluster_refused_are_stored_again(
    app, client, token, monkeypatch
):
    # A Galera node refuses a commit while the cluster changes shape ("Error
    # during COMMIT", 1180): nothing of the transaction was kept. The writer
    # rolls back, inserts the same chunks again and commits.
    real_commit = storage.ChunkStorer._commit
    refused = []

    def refuse_once(self, connection, progress):
        if not refused:
            refused.append(True)
            raise OperationalError(
                "COMMIT", {}, Exception(1180, "Error during COMMIT (not primary)")
            )
        return real_commit(self, connection, progress)

    monkeypatch.setattr(storage.ChunkStorer, "_commit", refuse_once)
    content = random_bytes(BIG, seed=12)
    file_id = uploaded(client, token, content, "refused.bin")["id"]
    assert refused == [True]
    assert stored_bytes(app, file_id) == content


def test_an_error_that_is_not_a_conflict_is_not_retried(client, token, monkeypatch):
    attempts = []

    def fail(self, connection, progress):
        attempts.append(True)
        raise OperationalError("COMMIT", {}, Exception(1146, "Table doesn't exist"))

    monkeypatch.setattr(storage.ChunkStorer, "_commit", fail)
    answer = multipart_upload(client, token, random_bytes(BIG, seed=13))
    assert answer.status_code == 503
    assert len(attempts) == 1


# Every byte value, the bytes that an escaped string would have to escape, and
# the edges of a chunk: what a hexadecimal literal must give back unchanged.
ROUND_TRIPS = [
    b"",
    bytes(range(256)),
    b"\x00'\"\\\n\r\x1a%s%%X'",
    b"\xff" * CHUNK,
    random.Random(7).randbytes(3 * CHUNK + 17),
]


@pytest.mark.parametrize(
    "data", ROUND_TRIPS, ids=["empty", "all", "quotes", "ff", "random"]
)
def test_chunk_bytes_round_trip_byte_for_byte(app, client, token, data):
    """Uploaded bytes come back identical on every database and driver."""
    file_id = uploaded(client, token, data, filename="edge.bin")["id"]
    assert stored_bytes(app, file_id) == data
    response = client.get(
        f"/files/{file_id}/download", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.data == data


def test_mysqlclient_sends_chunks_as_hexadecimal_literals(app, database_url):
    """Through mysqlclient a chunk travels as X'…', never as an escaped string."""
    if not database_url.startswith("mysql://"):
        pytest.skip("mysqlclient only")
    seen = []
    with app.app_context():
        engine = db.engine

        def statement(conn, cursor, text, parameters, context, executemany):
            literal = cursor.connection.literal
            seen.extend(
                literal(value) for value in parameters if type(value) is not int
            )

        owner_id = AuthActions(app, None).create_user()
        with app.test_request_context():
            stored = storage.begin(owner_id, "f.bin", "application/octet-stream")
        event.listen(engine, "before_cursor_execute", statement)
        try:
            with engine.begin() as connection:
                connection.execute(
                    db.insert(FileChunk),
                    {"file_id": stored.id, "seq": 0, "data": b"\x00'\\ab"},
                )
        finally:
            event.remove(engine, "before_cursor_execute", statement)
    assert seen == [b"X'00275c6162'"]
