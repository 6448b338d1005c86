"""Encryption at rest (sealing.py, storage_keys.py): every chunk and kept
secret sealed with AES-256-GCM under the storage keys; tampered rows refused,
never sent; a wrong or missing key stops the app at start; rows stored in
clear before the upgrade still read; `flask storage rekey` moves everything
to a new key, resumes where it stopped, and leaves rows a writer rewrote."""

import base64
import contextlib
import hashlib
from collections import Counter

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

import config
import credentials
import notifications
import sealing
import storage
import storage_keys
import two_factor
from app import create_app
from config import ConfigError
from helpers import (
    CHUNK,
    PASSWORD,
    SECRET_KEY,
    STORAGE_KEY,
    STORAGE_KEYS,
    bearer,
    download,
    form_upload,
    insert_file,
    make_app,
    new_upload,
    random_bytes,
    send_piece,
    stored_bytes,
    tus_upload,
    upload_offset,
    upload_row,
    uploaded,
    user_id,
)
from models import FileChunk, Share, StorageKey, User, Webhook, db, utcnow
from totp import code_for

# A second storage key, and both keys as an app's STORAGE_KEYS.
NEW_KEY = bytes(range(100, 132))
BOTH_KEYS = {"test-1": STORAGE_KEY, "test-2": NEW_KEY}
# Configured, test-1 current: the key a tampered row can be relabelled to.
TWO_KEYS_OLD_CURRENT = {
    "CHUNK_SIZE": CHUNK,
    "STORAGE_KEYS": BOTH_KEYS,
    "STORAGE_KEY_CURRENT": "test-1",
}
# After the roll: test-2 current, test-1 still configured.
TWO_KEYS_NEW_CURRENT = {
    "CHUNK_SIZE": CHUNK,
    "STORAGE_KEYS": BOTH_KEYS,
    "STORAGE_KEY_CURRENT": "test-2",
}
DAMAGED = {"message": storage.DAMAGED_MESSAGE}


# --- what the table holds ------------------------------------------------------


def chunk_table(app, file_id) -> list[tuple[int, str | None, bytes, int]]:
    """A file's rows as stored: (seq, key id, bytes, version), in order."""
    with app.app_context():
        rows = db.session.execute(
            db.select(
                FileChunk.seq, FileChunk.key_id, FileChunk.data, FileChunk.version
            )
            .filter_by(file_id=file_id)
            .order_by(FileChunk.seq)
        ).all()
        db.session.remove()
    return [(seq, key_id, bytes(data), version) for seq, key_id, data, version in rows]


def set_chunk(app, file_id, seq, **values) -> None:
    """Change one stored chunk row behind the app's back."""
    with app.app_context():
        db.session.execute(
            db.update(FileChunk).filter_by(file_id=file_id, seq=seq).values(**values)
        )
        db.session.commit()
        db.session.remove()


def key_counts(app) -> Counter:
    """How many chunk rows each key id seals (None: in clear)."""
    with app.app_context():
        counts = Counter(
            dict(
                db.session.execute(
                    db.select(FileChunk.key_id, db.func.count()).group_by(
                        FileChunk.key_id
                    )
                ).all()
            )
        )
        db.session.remove()
    return counts


def recorded_keys(app) -> dict[str, bool]:
    """The storage_key table: id -> retired or not."""
    with app.app_context():
        rows = db.session.execute(db.select(StorageKey.id, StorageKey.retired_at))
        recorded = {key_id: retired_at is not None for key_id, retired_at in rows}
        db.session.remove()
    return recorded


def windows(data: bytes, width: int = 64) -> set[bytes]:
    """Every run of ``width`` bytes in ``data``."""
    return {data[start : start + width] for start in range(len(data) - width + 1)}


def dispose(app) -> None:
    """Give back an extra app's connections."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def metadata(client, token, file_id) -> dict:
    """GET /files/<id>'s JSON."""
    answer = client.get(f"/files/{file_id}", headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def read_until_cut(response) -> bytes:
    """The body of a 200 whose stream must break off: what came before."""
    received = bytearray()
    with pytest.raises(sealing.DamagedData):
        for piece in response.iter_encoded():
            received += piece
    response.close()
    return bytes(received)


# --- 1. every byte value, sealed on the way in ------------------------------------

# Every byte value many times over, then random bytes: 3 chunks and 452 bytes.
ALL_BYTES = bytes(range(256)) * 40 + random_bytes(2500, seed=31)


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": CHUNK}], ids=["chunk4096"])
@pytest.mark.parametrize("how", ["form", "tus"])
def test_every_byte_value_round_trips_and_only_ciphertext_is_stored(
    app, client, token, how
):
    if how == "form":
        answer = form_upload(client, token, ALL_BYTES, "all-bytes.bin")
        assert answer.status_code == 201, answer.get_json()
        file_id = answer.get_json()["id"]
    else:
        file_id = tus_upload(client, token, ALL_BYTES, sizes=(1000, 5000))
    described = metadata(client, token, file_id)
    assert described["size"] == len(ALL_BYTES) == 3 * CHUNK + 452
    assert described["sha256"] == hashlib.sha256(ALL_BYTES).hexdigest()

    answer = download(client, token, file_id)
    assert answer.status_code == 200
    assert answer.headers["Content-Length"] == str(len(ALL_BYTES))
    assert answer.get_data() == ALL_BYTES

    rows = chunk_table(app, file_id)
    assert [seq for seq, _, _, _ in rows] == [0, 1, 2, 3]
    assert {key_id for _, key_id, _, _ in rows} == {"test-1"}
    assert [len(data) for _, _, data, _ in rows] == [CHUNK + 28] * 3 + [452 + 28]
    stored_runs = set().union(*(windows(data) for _, _, data, _ in rows))
    leaked = [run for run in windows(ALL_BYTES) if run in stored_runs]
    assert leaked == []
    # Chunks 0 and 1 hold the same bytes, yet are stored unlike (their own
    # nonce and place).
    assert ALL_BYTES[:CHUNK] == ALL_BYTES[CHUNK : 2 * CHUNK]
    assert rows[0][2] != rows[1][2]
    assert rows[0][2][:12] != rows[1][2][:12]
    assert stored_bytes(app, file_id) == ALL_BYTES


# --- 2. tampered rows are never sent -----------------------------------------------


@pytest.fixture
def three_files(client, token) -> list[tuple[int, bytes]]:
    """Three files of alice's, 3 chunks and 5 bytes each: (id, content)."""
    made = []
    for seed in (1, 2, 3):
        content = random_bytes(3 * CHUNK + 5, seed=seed)
        made.append((uploaded(client, token, content, f"f{seed}.bin")["id"], content))
    return made


def tamper(app, kind: str, file_id: int, seq: int, donor_id: int) -> None:
    """Damage chunk ``seq`` of a file the way ``kind`` says."""
    rows = {seq: (key_id, data) for seq, key_id, data, _ in chunk_table(app, file_id)}
    if kind == "swapped":
        # This chunk and the next trade places.
        set_chunk(app, file_id, seq, data=rows[seq + 1][1])
        set_chunk(app, file_id, seq + 1, data=rows[seq][1])
    elif kind == "moved":
        # The same place of another file, sealed under the same key.
        key_id, data = next(
            (key_id, data)
            for donor_seq, key_id, data, _ in chunk_table(app, donor_id)
            if donor_seq == seq
        )
        set_chunk(app, file_id, seq, data=data, key_id=key_id)
    elif kind == "flipped":
        data = bytearray(rows[seq][1])
        data[len(data) // 2] ^= 0x01
        set_chunk(app, file_id, seq, data=bytes(data))
    else:
        assert kind == "relabelled"
        set_chunk(app, file_id, seq, key_id="test-2")


TAMPERING = ["swapped", "moved", "flipped", "relabelled"]


@pytest.mark.parametrize("app_settings", [TWO_KEYS_OLD_CURRENT], ids=["two-keys"])
@pytest.mark.parametrize("kind", TAMPERING)
def test_a_damaged_first_chunk_is_a_500_that_names_the_file_in_the_log(
    app, client, token, three_files, caplog, kind
):
    (file_id, content), _, (donor_id, _) = three_files
    assert chunk_table(app, file_id)[0][1] == "test-1"
    tamper(app, kind, file_id, 0, donor_id)
    answer = download(client, token, file_id)
    assert answer.status_code == 500
    assert answer.get_json() == DAMAGED
    assert content[:64] not in answer.get_data()
    assert (
        f"Download of file {file_id} cut short, its stored data is damaged: "
        "chunk 0 failed its integrity check"
    ) in caplog.text
    # A range inside the damaged chunk: the same.
    ranged = download(client, token, file_id, Range="bytes=100-200")
    assert ranged.status_code == 500
    assert ranged.get_json() == DAMAGED


@pytest.mark.parametrize("app_settings", [TWO_KEYS_OLD_CURRENT], ids=["two-keys"])
@pytest.mark.parametrize("kind", TAMPERING)
def test_a_damaged_later_chunk_cuts_the_body_short_after_the_right_bytes(
    app, client, token, three_files, caplog, kind
):
    _, (file_id, content), (donor_id, _) = three_files
    tamper(app, kind, file_id, 1, donor_id)
    answer = download(client, token, file_id)
    assert answer.status_code == 200
    assert answer.headers["Content-Length"] == str(len(content))
    # Chunk 0, and not one byte more: never someone else's bytes.
    assert read_until_cut(answer) == content[:CHUNK]
    assert (
        f"Download of file {file_id} cut short, its stored data is damaged: "
        "chunk 1 failed its integrity check"
    ) in caplog.text
    # A range whose first chunk is the damaged one: a 500, no status 206.
    ranged = download(client, token, file_id, Range=f"bytes={CHUNK + 10}-")
    assert ranged.status_code == 500
    assert ranged.get_json() == DAMAGED
    # A range within the sound chunk still comes whole.
    sound = download(client, token, file_id, Range="bytes=10-4095")
    assert sound.status_code == 206
    assert sound.get_data() == content[10:CHUNK]
    # The untouched file is untouched.
    (other_id, other), _, _ = three_files
    assert download(client, token, other_id).get_data() == other


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": CHUNK}], ids=["chunk4096"])
def test_an_upload_whose_stored_last_chunk_is_damaged_is_not_continued(
    app, client, token, caplog
):
    content = random_bytes(3 * CHUNK + 5, seed=12)
    path = new_upload(client, token, len(content))
    assert send_piece(client, path, 0, content[:5000]).status_code == 204
    file_id = int(upload_row(app, path).file_id)
    [(_, _, first, _), (_, _, tail, _)] = chunk_table(app, file_id)
    flipped = bytearray(tail)
    flipped[20] ^= 0x04
    set_chunk(app, file_id, 1, data=bytes(flipped))
    answer = send_piece(client, path, 5000, content[5000:])
    assert answer.status_code == 500
    assert answer.get_json() == DAMAGED
    assert f"Stored data of file {file_id} is damaged" in caplog.text
    # Nothing was built on the damaged bytes.
    assert [data for _, _, data, _ in chunk_table(app, file_id)] == [
        first,
        bytes(flipped),
    ]
    assert upload_offset(client, path) == 5000


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": CHUNK}], ids=["chunk4096"])
def test_an_older_seal_of_a_chunk_put_back_sends_no_wrong_byte(app, client, token):
    content = random_bytes(3 * CHUNK + 5, seed=13)
    path = new_upload(client, token, len(content))
    assert send_piece(client, path, 0, content[:5000]).status_code == 204
    file_id = int(upload_row(app, path).file_id)
    old_tail = chunk_table(app, file_id)[1][2]  # 904 bytes, sealed
    finished = send_piece(client, path, 5000, content[5000:])
    assert finished.status_code == 204, finished.get_json()
    set_chunk(app, file_id, 1, data=old_tail)  # a backup's copy of the row
    answer = download(client, token, file_id)
    received = bytearray()
    with contextlib.suppress(sealing.DamagedData, storage.MissingChunkError):
        for piece in answer.iter_encoded():
            received += piece
    answer.close()
    assert answer.status_code in (200, 500)
    wrong_from = next(
        (
            at
            for at, (sent, real) in enumerate(zip(received, content, strict=False))
            if sent != real
        ),
        None,
    )
    assert wrong_from is None, f"{len(received)} bytes sent, wrong from {wrong_from}"
    assert len(received) <= len(content)


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": CHUNK}], ids=["chunk4096"])
def test_a_share_link_to_a_damaged_file_is_a_500_and_counts_nothing(
    app, client, token, three_files, caplog
):
    (file_id, _), (second_id, second), _ = three_files
    single = client.post(f"/files/{file_id}/shares", json={}, headers=bearer(token))
    several = client.post(
        "/shares", json={"file_ids": [file_id, second_id]}, headers=bearer(token)
    )
    assert (single.status_code, several.status_code) == (201, 201)
    tamper(app, "flipped", file_id, 0, second_id)

    for link in (single.get_json(), several.get_json()):
        path = link["url"].removeprefix("http://localhost")
        answer = client.get(path + "/download")
        assert answer.status_code == 500, path
        assert answer.get_json() == DAMAGED
        assert "Set-Cookie" not in answer.headers
    assert caplog.text.count(f"Download of file {file_id} cut short") == 2
    with app.app_context():
        counts = db.session.execute(db.select(Share.downloads)).scalars().all()
        db.session.remove()
    assert counts == [0, 0]

    # The link's other, sound file still comes alone.
    path = several.get_json()["url"].removeprefix("http://localhost")
    alone = client.get(path + "/files/2")
    assert alone.status_code == 200
    assert alone.get_data() == second


@pytest.mark.parametrize("app_settings", [{"CHUNK_SIZE": CHUNK}], ids=["chunk4096"])
def test_a_zip_whose_first_file_is_empty_is_a_500_when_the_next_is_damaged(
    app, client, token, three_files
):
    (file_id, _), (donor_id, _), _ = three_files
    empty_id = uploaded(client, token, b"", "empty.bin")["id"]
    link = client.post(
        "/shares", json={"file_ids": [empty_id, file_id]}, headers=bearer(token)
    )
    assert link.status_code == 201, link.get_json()
    tamper(app, "flipped", file_id, 0, donor_id)
    path = link.get_json()["url"].removeprefix("http://localhost")
    answer = client.get(path + "/download")
    try:
        assert answer.status_code == 500
        assert answer.get_json() == DAMAGED
    finally:
        # As it is: a 200 whose body breaks off after the zip's first entry
        # and the second one's header, before any byte of the damaged file.
        if answer.status_code == 200:
            body = read_until_cut(answer)
            assert body.count(b"PK\x03\x04") == 2
            assert body.endswith(b"f1.bin")


# --- 3. a wrong or missing key stops the app at start -----------------------------


@contextlib.contextmanager
def every_statement():
    """Every SQL statement any engine sends inside the block; the engines
    that sent them are disposed of afterwards."""
    seen: list[str] = []
    engines: set[Engine] = set()

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)
        engines.add(conn.engine)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)
        for engine in engines:
            engine.dispose()


def start(database_url, **settings):
    """create_app on the test database (its tables exist), as a server starts."""
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": database_url,
            **settings,
        }
    )


REFUSALS = {
    "wrong": (
        {"STORAGE_KEYS": {"test-1": NEW_KEY}},
        "another key than the one the database's data is sealed under, for the "
        "key 'test-1'",
    ),
    "missing": (
        {"STORAGE_KEYS": {"other": NEW_KEY}, "STORAGE_KEY_CURRENT": "other"},
        "The database holds data sealed under the key 'test-1', which "
        "STORAGE_KEYS lacks",
    ),
    "off": (
        {"STORAGE_KEYS": {}},
        "The database holds data sealed under the key 'test-1', which "
        "STORAGE_KEYS lacks",
    ),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_wrong_or_missing_key_stops_the_app_without_reading_chunks(
    app, client, token, database_url, refusal
):
    uploaded(client, token, random_bytes(3000, seed=4))  # test-1 now recorded
    assert recorded_keys(app) == {"test-1": False}
    settings, message = REFUSALS[refusal]
    with every_statement() as seen:
        with pytest.raises(ConfigError) as refused:
            start(database_url, **settings)
    assert message in str(refused.value)
    assert any("storage_key" in statement for statement in seen), seen
    assert [statement for statement in seen if "file_chunk" in statement] == []
    # Nothing of the refused configuration was recorded.
    assert recorded_keys(app) == {"test-1": False}

    # The right key starts, reading storage_key and never file_chunk either.
    with every_statement() as seen:
        started = start(database_url)
        dispose(started)
    assert any("storage_key" in statement for statement in seen), seen
    assert [statement for statement in seen if "file_chunk" in statement] == []


def test_a_retired_current_key_stops_the_app(app, client, token, database_url):
    uploaded(client, token, b"sealed")
    with app.app_context():
        db.session.execute(db.update(StorageKey).values(retired_at=utcnow()))
        db.session.commit()
    with every_statement():
        with pytest.raises(ConfigError, match="Storage key 'test-1' was retired"):
            start(database_url)


# --- 4. rows stored in clear before the upgrade -------------------------------------


def test_chunks_stored_in_clear_still_download_and_rekey_seals_them(
    app, client, token, runner
):
    content = random_bytes(2 * CHUNK + 777, seed=9)
    file_id = insert_file(app, user_id(app), content)
    before = chunk_table(app, file_id)
    assert [(key_id, data) for _, key_id, data, _ in before] == [
        (None, content[:CHUNK]),
        (None, content[CHUNK : 2 * CHUNK]),
        (None, content[2 * CHUNK :]),
    ]
    answer = download(client, token, file_id)
    assert answer.status_code == 200
    assert answer.get_data() == content

    result = runner.invoke(args=["storage", "rekey"])
    assert result.exit_code == 0, result.output
    assert "3 chunks to re-seal under key 'test-1'" in result.output
    assert "3 chunks re-sealed" in result.output
    assert "Every chunk is sealed under key 'test-1'" in result.output

    after = chunk_table(app, file_id)
    assert [key_id for _, key_id, _, _ in after] == ["test-1"] * 3
    assert [len(data) for _, _, data, _ in after] == [CHUNK + 28] * 2 + [777 + 28]
    assert [version for _, _, _, version in after] == [1, 1, 1]
    assert all(content[:64] not in data for _, _, data, _ in after)
    answer = download(client, token, file_id)
    assert answer.status_code == 200
    assert answer.get_data() == content
    # Nothing left to do: a second run changes nothing.
    again = runner.invoke(args=["storage", "rekey"])
    assert again.exit_code == 0, again.output
    assert "0 chunks to re-seal" in again.output
    assert chunk_table(app, file_id) == after


@pytest.mark.parametrize(
    "app_settings", [{"CHUNK_SIZE": CHUNK, "STORAGE_KEYS": {}}], ids=["off"]
)
def test_without_storage_keys_chunks_are_stored_in_clear_and_rekey_refuses(
    app, client, token, runner
):
    content = random_bytes(CHUNK + 10, seed=6)
    file_id = uploaded(client, token, content)["id"]
    assert [(key_id, data) for _, key_id, data, _ in chunk_table(app, file_id)] == [
        (None, content[:CHUNK]),
        (None, content[CHUNK:]),
    ]
    assert download(client, token, file_id).get_data() == content
    listed = runner.invoke(args=["storage", "keys"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == [
        "(in clear): 2 chunks",
        "Encryption at rest is off: STORAGE_KEYS is not set",
    ]
    result = runner.invoke(args=["storage", "rekey"])
    assert result.exit_code == 1
    assert "STORAGE_KEYS is not set: there is no key to seal under" in result.output
    assert recorded_keys(app) == {}


# --- 5. rolling to a new key -------------------------------------------------------


@pytest.fixture
def old_app(app, database_url):
    """An instance of the same site from before the roll: both keys, test-1
    current."""
    before = make_app(database_url, **TWO_KEYS_OLD_CURRENT)
    yield before
    dispose(before)


@pytest.fixture
def old_files(old_app, token) -> list[tuple[int, bytes]]:
    """Three files uploaded before the roll, sealed under test-1: 2, 3 and 4
    chunks (9 in all)."""
    client = old_app.test_client()
    made = []
    for chunks in (2, 3, 4):
        content = random_bytes((chunks - 1) * CHUNK + 100, seed=chunks)
        made.append((uploaded(client, token, content, f"{chunks}.bin")["id"], content))
    assert key_counts(old_app) == {"test-1": 9}
    return made


def assert_downloads(client, token, files) -> None:
    for file_id, content in files:
        answer = download(client, token, file_id)
        assert answer.status_code == 200
        assert answer.get_data() == content


@pytest.mark.parametrize("app_settings", [TWO_KEYS_NEW_CURRENT], ids=["test-2"])
def test_rekey_moves_every_chunk_to_the_new_key_and_the_old_one_retires(
    app, client, token, runner, old_files, database_url, monkeypatch
):
    monkeypatch.setattr(storage_keys, "REPORT_SECONDS", 0)
    assert recorded_keys(app) == {"test-1": False, "test-2": False}
    assert_downloads(client, token, old_files)

    result = runner.invoke(args=["storage", "rekey"])
    assert result.exit_code == 0, result.output
    assert "9 chunks to re-seal under key 'test-2'" in result.output
    assert "  8 of 9 chunks re-sealed (88 %)" in result.output
    assert "9 chunks re-sealed" in result.output
    assert (
        "Key 'test-1' seals nothing: once every instance seals under 'test-2', "
        "retire it (flask storage retire test-1) and take it out of STORAGE_KEYS"
    ) in result.output
    assert "Every chunk is sealed under key 'test-2'" in result.output

    assert key_counts(app) == {"test-2": 9}
    assert recorded_keys(app) == {"test-1": False, "test-2": False}
    # The current key is never retired; the emptied one is, when asked.
    refused = runner.invoke(args=["storage", "retire", "test-2"])
    assert refused.exit_code == 1 and "is the current key" in refused.output
    retired = runner.invoke(args=["storage", "retire", "test-1"])
    assert retired.exit_code == 0, retired.output
    assert recorded_keys(app) == {"test-1": True, "test-2": False}
    assert_downloads(client, token, old_files)
    # test-1 may now leave STORAGE_KEYS; it may not be current again.
    with every_statement():
        dispose(
            start(
                database_url,
                STORAGE_KEYS={"test-2": NEW_KEY},
                STORAGE_KEY_CURRENT="test-2",
            )
        )
        with pytest.raises(ConfigError, match="'test-1' was retired"):
            start(database_url, **TWO_KEYS_OLD_CURRENT)


@pytest.mark.parametrize("app_settings", [TWO_KEYS_NEW_CURRENT], ids=["test-2"])
def test_an_interrupted_rekey_goes_on_where_it_stopped(
    app, client, token, runner, old_files, monkeypatch
):
    monkeypatch.setattr(storage_keys, "CHUNKS_PER_TRANSACTION", 2)
    real = storage_keys._reseal_one
    calls = []

    def crash_in_the_third_batch(file_id, seq):
        calls.append((file_id, seq))
        if len(calls) == 6:
            # The process dies after the 5th chunk's UPDATE, uncommitted.
            raise RuntimeError("killed")
        return real(file_id, seq)

    monkeypatch.setattr(storage_keys, "_reseal_one", crash_in_the_third_batch)
    stopped = runner.invoke(args=["storage", "rekey"])
    assert stopped.exit_code != 0
    # Two batches committed; the third's first chunk went with its transaction.
    assert key_counts(app) == {"test-2": 4, "test-1": 5}
    assert recorded_keys(app) == {"test-1": False, "test-2": False}
    assert_downloads(client, token, old_files)

    monkeypatch.setattr(storage_keys, "_reseal_one", real)
    resumed = runner.invoke(args=["storage", "rekey"])
    assert resumed.exit_code == 0, resumed.output
    assert "5 chunks to re-seal under key 'test-2'" in resumed.output
    assert "5 chunks re-sealed" in resumed.output
    assert key_counts(app) == {"test-2": 9}
    assert recorded_keys(app) == {"test-1": False, "test-2": False}
    assert "Key 'test-1' seals nothing:" in resumed.output
    assert_downloads(client, token, old_files)


@pytest.mark.parametrize("app_settings", [TWO_KEYS_NEW_CURRENT], ids=["test-2"])
@pytest.mark.parametrize(
    "writer_key",
    # An instance already on test-2, and one not yet switched: then only the
    # row's version tells the rewritten row from the one rekey read.
    ["test-2", "test-1"],
)
def test_rekey_leaves_a_chunk_a_writer_rewrote_after_it_was_read(
    app, client, token, old_files, monkeypatch, writer_key
):
    (file_id, content), _, _ = old_files
    [_, (seq, _, _, version)] = chunk_table(app, file_id)
    rewritten = b"the writer's own bytes" * 4
    writer = sealing.Keys(BOTH_KEYS, writer_key)
    with app.app_context():
        keys = sealing.keys()
        real_seal = keys.seal_chunk

        def writer_between_read_and_update(file_id_, seq_, plain):
            # The last chunk read and opened: now an upload rewrites it.
            assert (file_id_, seq_, plain) == (file_id, seq, content[CHUNK:])
            with db.engine.begin() as connection:
                connection.execute(
                    storage.chunk_upsert(db.engine.dialect.name),
                    storage.sealed_row(writer, file_id, seq, rewritten),
                )
            return real_seal(file_id_, seq_, plain)

        monkeypatch.setattr(keys, "seal_chunk", writer_between_read_and_update)
        outcome = storage_keys._reseal_one(file_id, seq)
        db.session.commit()
        monkeypatch.setattr(keys, "seal_chunk", real_seal)
        db.session.remove()
    assert outcome == "changed"
    rows = chunk_table(app, file_id)
    assert (rows[1][1], rows[1][3]) == (writer_key, version + 1)
    assert writer.open_chunk(file_id, seq, rows[1][1], rows[1][2]) == rewritten
    # The chunk before it was not touched.
    assert (rows[0][1], rows[0][3]) == ("test-1", 0)


@pytest.mark.parametrize("app_settings", [TWO_KEYS_NEW_CURRENT], ids=["test-2"])
def test_rekey_leaves_a_damaged_chunk_says_so_and_keeps_its_key(
    app, runner, old_files, caplog
):
    _, _, (other_id, _) = old_files
    damaged = bytearray(chunk_table(app, other_id)[2][2])
    damaged[-1] ^= 0x80
    set_chunk(app, other_id, 2, data=bytes(damaged))
    result = runner.invoke(args=["storage", "rekey"])
    assert result.exit_code == 1
    assert f"file {other_id}, chunk 2: damaged, left as it is" in result.output
    assert "1 chunks are not under key 'test-2' yet, 1 of them damaged" in (
        result.output
    )
    assert f"Stored data of file {other_id} is damaged, left as it is" in caplog.text
    assert key_counts(app) == {"test-2": 8, "test-1": 1}
    assert chunk_table(app, other_id)[2][2] == bytes(damaged)
    # test-1 still seals something: not retired.
    assert recorded_keys(app) == {"test-1": False, "test-2": False}
    assert "retired" not in result.output


@pytest.mark.parametrize("app_settings", [TWO_KEYS_OLD_CURRENT], ids=["test-2-added"])
def test_rekey_does_not_retire_a_key_added_but_not_yet_current(
    app, client, token, runner, database_url
):
    content = random_bytes(CHUNK + 10, seed=8)
    file_id = uploaded(client, token, content)["id"]
    result = runner.invoke(args=["storage", "rekey"])
    assert result.exit_code == 0, result.output
    assert "0 chunks to re-seal under key 'test-1'" in result.output
    # Nothing was ever sealed under test-2: it is on its way in, not out.
    assert "Key 'test-2' seals nothing" not in result.output
    assert recorded_keys(app) == {"test-1": False, "test-2": False}
    # The next step of the roll: test-2 made current everywhere.
    with every_statement():
        rolled = start(database_url, **TWO_KEYS_NEW_CURRENT)
        try:
            answer = download(rolled.test_client(), token, file_id)
            assert answer.get_data() == content
        finally:
            dispose(rolled)


# --- 7. kept secrets ---------------------------------------------------------------

HOOKS = {"WEBHOOK_ALLOW_HOSTS": frozenset({"127.0.0.1"})}


def add_webhook(client, token) -> dict:
    answer = client.post(
        "/webhooks",
        json={
            "url": "http://127.0.0.1:9/hook",
            "events": [notifications.LINK_DOWNLOADED],
        },
        headers=bearer(token),
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def enrol(client, token, clock) -> str:
    """Turn alice's second factor on; its secret."""
    begun = client.post(
        "/account/two-factor", json={"password": PASSWORD}, headers=bearer(token)
    )
    assert begun.status_code == 200, begun.get_json()
    secret = begun.get_json()["secret"]
    confirmed = client.post(
        "/account/two-factor/confirm",
        json={"code": code_for(secret, clock.step)},
        headers=bearer(token),
    )
    assert confirmed.status_code == 200, confirmed.get_json()
    return secret


def kept_secrets(app) -> tuple[str, str]:
    """(alice's totp_secret, her one webhook's secret) as stored."""
    with app.app_context():
        totp = db.session.execute(
            db.select(User.totp_secret).filter_by(username="alice")
        ).scalar_one()
        hook = db.session.execute(db.select(Webhook.secret)).scalar_one()
        db.session.remove()
    return totp, hook


def opened_secrets(app) -> tuple[str | None, str]:
    """(alice's TOTP secret, her webhook's secret) opened by ``app``."""
    with app.app_context():
        alice = db.session.execute(
            db.select(User).filter_by(username="alice")
        ).scalar_one()
        webhook = db.session.execute(db.select(Webhook)).scalar_one()
        opened = two_factor.secret_of(alice), notifications.webhook_secret(webhook)
        db.session.remove()
    return opened


@pytest.mark.parametrize("app_settings", [HOOKS], ids=["hooks"])
def test_kept_secrets_are_sealed_and_rekey_moves_them_to_the_new_key(
    app, client, token, clock, runner, database_url
):
    totp_secret = enrol(client, token, clock)
    hook_secret = add_webhook(client, token)["secret"]
    assert hook_secret.startswith("whsec_")
    stored_totp, stored_hook = kept_secrets(app)
    assert stored_totp.startswith("gcm:test-1:")
    assert stored_hook.startswith("gcm:test-1:")
    assert totp_secret not in stored_totp
    assert hook_secret not in stored_hook
    assert hook_secret.removeprefix("whsec_") not in stored_hook
    assert opened_secrets(app) == (totp_secret, hook_secret)
    # Already under the current key: nothing to re-seal.
    result = runner.invoke(args=["storage", "rekey"])
    assert result.exit_code == 0, result.output
    assert "0 kept secrets re-sealed" in result.output
    assert kept_secrets(app) == (stored_totp, stored_hook)

    rolled = make_app(database_url, **HOOKS, **TWO_KEYS_NEW_CURRENT)
    try:
        result = rolled.test_cli_runner().invoke(args=["storage", "rekey"])
        assert result.exit_code == 0, result.output
        assert "2 kept secrets re-sealed" in result.output
        assert "Key 'test-1' seals nothing" in result.output
        retired = rolled.test_cli_runner().invoke(args=["storage", "retire", "test-1"])
        assert retired.exit_code == 0, retired.output
        new_totp, new_hook = kept_secrets(rolled)
        assert new_totp.startswith("gcm:test-2:")
        assert new_hook.startswith("gcm:test-2:")
        assert opened_secrets(rolled) == (totp_secret, hook_secret)
    finally:
        dispose(rolled)
    assert recorded_keys(app) == {"test-1": True, "test-2": False}


@pytest.mark.parametrize("app_settings", [HOOKS], ids=["hooks"])
def test_secrets_kept_before_the_upgrade_still_open_and_rekey_seals_them(
    app, client, token, runner
):
    add_webhook(client, token)
    owner = user_id(app)
    legacy_hook = "whsec_" + base64.b64encode(random_bytes(24, seed=5)).decode()
    legacy_totp = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    with app.app_context():
        # What an older release kept: the webhook secret in clear, the
        # second factor's sealed with a key derived from SECRET_KEY.
        fernet = credentials.sealer(two_factor.SECRET_PURPOSE).encrypt(
            f"{owner}:{legacy_totp}".encode()
        )
        db.session.execute(db.update(Webhook).values(secret=legacy_hook))
        db.session.execute(
            db.update(User).filter_by(id=owner).values(totp_secret=fernet.decode())
        )
        db.session.commit()
        db.session.remove()
    assert opened_secrets(app) == (legacy_totp, legacy_hook)

    result = runner.invoke(args=["storage", "rekey"])
    assert result.exit_code == 0, result.output
    assert "2 kept secrets re-sealed" in result.output
    stored_totp, stored_hook = kept_secrets(app)
    assert stored_totp.startswith("gcm:test-1:")
    assert stored_hook.startswith("gcm:test-1:")
    assert legacy_hook not in stored_hook and legacy_totp not in stored_totp
    assert opened_secrets(app) == (legacy_totp, legacy_hook)


# --- 8. configuration and the storage commands ---------------------------------------

KEY_A, KEY_B = bytes(range(32)), bytes(range(0xE0, 0x100))
B64_A, B64_B = base64.b64encode(KEY_A).decode(), base64.b64encode(KEY_B).decode()
# KEY_B's standard base64 has "+" and "/", its url-safe form "-" and "_".
assert {"+", "/"} <= set(B64_B)


@pytest.mark.parametrize(
    ("text", "keys", "current"),
    [
        (f"*a:{B64_A},b:{B64_B}", {"a": KEY_A, "b": KEY_B}, "a"),
        (f"a:{B64_A}\n*b:{B64_B}\n", {"a": KEY_A, "b": KEY_B}, "b"),
        (f"  a:{B64_A}   *b:{B64_B}  ", {"a": KEY_A, "b": KEY_B}, "b"),
        (
            f"# rolled in 2026\n*a:{B64_A}  # current\n# b:{B64_B}\n",
            {"a": KEY_A},
            "a",
        ),
        (
            f"*2026-12.x_y:{base64.urlsafe_b64encode(KEY_B).decode()}",
            {"2026-12.x_y": KEY_B},
            "2026-12.x_y",
        ),
        (
            f"*b:{base64.urlsafe_b64encode(KEY_B).decode().rstrip('=')}",
            {"b": KEY_B},
            "b",
        ),
        (f"only:{B64_A}", {"only": KEY_A}, "only"),
        ("", {}, ""),
    ],
    ids=[
        "commas",
        "lines",
        "spaces",
        "comments",
        "url-safe",
        "unpadded",
        "single",
        "none",
    ],
)
def test_storage_keys_are_read_in_every_documented_form(text, keys, current):
    assert config.parse_storage_keys(text) == (keys, current)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"*a:{B64_A},*b:{B64_B}", "only one key may be marked current"),
        (f"a:{B64_A},b:{B64_B}", "mark the current key with a *"),
        (f"*a:{B64_A},a:{B64_B}", "key 'a' is given twice"),
        (f"*bad/id:{B64_A}", "each entry is id:key"),
        (f"*{'x' * 33}:{B64_A}", "each entry is id:key"),
        (f"*:{B64_A}", "each entry is id:key"),
        (B64_A, "each entry is id:key"),
        (f"*a:{base64.b64encode(bytes(16)).decode()}", "key 'a' is not 32 bytes"),
        (f"*a:{base64.b64encode(bytes(33)).decode()}", "key 'a' is not 32 bytes"),
        ("*a:", "key 'a' is not 32 bytes"),
        ("*a:not-base64-at-all!", "key 'a' is not 32 bytes"),
        ("*a:ÿÿÿÿ", "key 'a' is not 32 bytes"),
    ],
    ids=[
        "two-stars",
        "no-star",
        "twice",
        "slash",
        "long-id",
        "no-id",
        "no-colon",
        "16-bytes",
        "33-bytes",
        "empty",
        "garbage",
        "not-ascii",
    ],
)
def test_storage_keys_that_are_wrong_are_refused(text, message):
    with pytest.raises(ConfigError) as refused:
        config.parse_storage_keys(text)
    assert str(refused.value).startswith("STORAGE_KEYS: ")
    assert message in str(refused.value)


def test_storage_keys_file_is_read(monkeypatch, tmp_path):
    key_file = tmp_path / "storage-keys"
    key_file.write_text(f"# the site's keys\na:{B64_A}\n*b:{B64_B}\n")
    monkeypatch.delenv("STORAGE_KEYS", raising=False)
    monkeypatch.setenv("STORAGE_KEYS_FILE", str(key_file))
    settings = config.from_environment(str(tmp_path))
    assert settings["STORAGE_KEYS"] == {"a": KEY_A, "b": KEY_B}
    assert settings["STORAGE_KEY_CURRENT"] == "b"

    key_file.write_text(f"a:{B64_A}\nb:{B64_B}\n")
    with pytest.raises(ConfigError, match="^STORAGE_KEYS_FILE: mark the current"):
        config.from_environment(str(tmp_path))


def test_storage_keys_and_a_keys_file_together_are_refused(monkeypatch, tmp_path):
    key_file = tmp_path / "storage-keys"
    key_file.write_text(f"*a:{B64_A}\n")
    monkeypatch.setenv("STORAGE_KEYS", STORAGE_KEYS)
    monkeypatch.setenv("STORAGE_KEYS_FILE", str(key_file))
    with pytest.raises(ConfigError, match="Set STORAGE_KEYS or STORAGE_KEYS_FILE"):
        config.from_environment(str(tmp_path))


@pytest.mark.parametrize("what", ["missing", "folder", "not-utf8"])
def test_a_keys_file_that_cannot_be_read_is_refused(monkeypatch, tmp_path, what):
    path = tmp_path / "storage-keys"
    if what == "folder":
        path.mkdir()
    elif what == "not-utf8":
        path.write_bytes(b"*a:\xff\xfe\n")
    monkeypatch.delenv("STORAGE_KEYS", raising=False)
    monkeypatch.setenv("STORAGE_KEYS_FILE", str(path))
    with pytest.raises(ConfigError, match="^STORAGE_KEYS_FILE cannot be read: "):
        config.from_environment(str(tmp_path))


@pytest.mark.one_database
def test_new_key_prints_an_entry_that_parses_to_a_fresh_current_key(runner):
    made = []
    for _ in range(2):
        result = runner.invoke(args=["storage", "new-key", "2027-01"])
        assert result.exit_code == 0, result.output
        keys, current = config.parse_storage_keys(result.output)
        assert result.output.startswith("*2027-01:")
        assert current == "2027-01" and len(keys["2027-01"]) == 32
        made.append(keys["2027-01"])
    assert made[0] != made[1]


@pytest.mark.one_database
@pytest.mark.parametrize("key_id", ["bad id", "a/b", "x" * 33, ""])
def test_new_key_refuses_a_bad_id(runner, key_id):
    result = runner.invoke(args=["storage", "new-key", "--", key_id])
    assert result.exit_code == 2
    assert "Invalid value for KEY_ID" in result.output
    assert "*" not in result.output


@pytest.mark.parametrize("app_settings", [TWO_KEYS_OLD_CURRENT], ids=["two-keys"])
def test_storage_keys_lists_each_key_with_its_chunks(app, client, token, runner):
    uploaded(client, token, random_bytes(3 * CHUNK + 5, seed=1))
    insert_file(app, user_id(app), random_bytes(CHUNK + 1, seed=2))
    result = runner.invoke(args=["storage", "keys"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "(in clear): 2 chunks",
        "test-1: 4 chunks (current, configured)",
        "test-2: 0 chunks (configured)",
    ]
    assert set(recorded_keys(app)) == {"test-1", "test-2"}
