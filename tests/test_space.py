"""space.py: what each table has allocated against what it uses, and the space
of deleted files going back to the file system: SQLite's free pages (new
databases use incremental auto-vacuum; old ones are converted once), and
MariaDB's chunk table rebuilt online into a smaller tablespace."""

import contextlib
import os
import re
import sqlite3
import uuid

import pytest
import sqlalchemy as sa

import space
import storage
from helpers import (
    MIB,
    AuthActions,
    bearer,
    empty_tables,
    insert_file,
    make_app,
    random_bytes,
    user_id,
)
from models import FileChunk, StoredFile, db

# What the shrinking test stores and deletes.
GROWTH = 200 * MIB


def is_sqlite(app) -> bool:
    """Whether the app keeps its data in SQLite."""
    with app.app_context():
        return db.engine.dialect.name == "sqlite"


def pragma(app, name: str) -> int:
    """A SQLite pragma's value, read through the app."""
    with app.app_context():
        return db.session.execute(sa.text(f"PRAGMA {name}")).scalar_one()


def store(app, owner_id: int, size: int, seed: int) -> int:
    """A finished file of ``size`` random bytes, written through the storage
    layer as an upload writes it (sealed chunk rows); its id."""
    with app.test_request_context():
        stored_file = storage.begin(owner_id, f"{seed}.bin", None)
        writer = storage.ChunkWriter(stored_file)
        for number in range(size // MIB):
            writer.write(random_bytes(MIB, seed=seed * 10_000 + number))
        writer.finish()
        return storage.finish(stored_file).id


def delete_all_files(app):
    """Delete every file with its chunks, as the API's DELETE does."""
    with app.app_context():
        storage.delete_stored_files(StoredFile.id.is_not(None))
        db.session.commit()


def delete_all_files_but(app, keep: int):
    """Delete every file except ``keep``."""
    with app.app_context():
        storage.delete_stored_files(StoredFile.id != keep)
        db.session.commit()


def footprint(app) -> int:
    """Bytes on disk that hold the chunk table, as the file system has them:
    the SQLite database file with its write-ahead log, or file_chunk's own
    tablespace (its .ibd file) on MariaDB."""
    if not is_sqlite(app):
        return chunk_tablespace(app)[1]
    with app.app_context():
        path = db.engine.url.database
    return sum(
        os.path.getsize(name) for name in (path, path + "-wal") if os.path.exists(name)
    )


def chunk_tablespace(app) -> tuple[int, int]:
    """MariaDB: the id of file_chunk's own tablespace (a rebuild makes a new
    one) and its file's size, which since MariaDB 10.6 the server reads
    from the file system."""
    with app.app_context():
        # Each table has a file of its own only with innodb_file_per_table.
        assert db.session.execute(sa.text("SELECT @@innodb_file_per_table")).scalar()
        return tuple(
            db.session.execute(
                sa.text(
                    "SELECT SPACE, FILE_SIZE"
                    " FROM information_schema.INNODB_SYS_TABLESPACES"
                    " WHERE NAME = :name"
                ),
                {"name": f"{db.engine.url.database}/{FileChunk.__tablename__}"},
            ).one()
        )


def rebuild_marker(app) -> int:
    """What a compaction changes: SQLite's count of free pages, or on MariaDB
    the chunk table's tablespace."""
    if is_sqlite(app):
        return pragma(app, "freelist_count")
    return chunk_tablespace(app)[0]


def tables(app) -> dict[str, space.TableSpace]:
    """space.report(), by table name."""
    with app.app_context():
        return {table.name: table for table in space.report()}


@contextlib.contextmanager
def sqlite_app(path):
    """An app on the SQLite file at ``path``, its engine closed afterwards."""
    app = make_app(f"sqlite:///{path}")
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.slow
def test_deleted_files_space_goes_back_to_the_file_system(app, client, token, runner):
    # From the table's live size: the MariaDB database is the whole session's.
    assert runner.invoke(args=["storage", "compact", "--min-free", "0"]).exit_code == 0
    owner_id = user_id(app)
    before = footprint(app)
    file_ids = [store(app, owner_id, 20 * MIB, seed) for seed in range(10)]
    grown = footprint(app)
    assert grown - before >= GROWTH

    for file_id in file_ids:
        answer = client.delete(f"/files/{file_id}", headers=bearer(token))
        assert answer.status_code == 204
    if is_sqlite(app):
        result = runner.invoke(args=["files", "gc"])
        assert result.exit_code == 0, result.output
        assert "of free pages back to the file system" in result.output
    else:
        result = runner.invoke(args=["storage", "compact", "--min-free", "0"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("Rebuilt file_chunk in ")

    after = footprint(app)
    # A twentieth: what SQLite's write-ahead log grew to must have gone too.
    assert after - before < (grown - before) / 20, (before, grown, after)


def test_a_new_database_uses_incremental_auto_vacuum(tmp_path):
    with sqlite_app(tmp_path / "new.db") as app:
        assert pragma(app, "auto_vacuum") == space.AUTO_VACUUM_INCREMENTAL


def test_free_pages_go_back_in_bounded_steps(tmp_path):
    with sqlite_app(tmp_path / "steps.db") as app:
        owner_id = AuthActions(app, None).create_user()
        insert_file(app, owner_id, random_bytes(MIB))
        delete_all_files(app)
        free = pragma(app, "freelist_count")
        page_size = pragma(app, "page_size")
        assert free > 20

        with app.app_context():
            given_back = space.release_free_pages(step_pages=5, max_steps=2, pause=0)
            assert given_back == 10 * page_size
            assert pragma(app, "freelist_count") == free - 10
            # Without a limit, until none is left.
            rest = space.release_free_pages(max_steps=None, pause=0)
        assert rest == (free - 10) * page_size
        assert pragma(app, "freelist_count") == 0
        with app.app_context():
            assert space.release_free_pages() == 0


def test_an_old_database_is_converted_once_and_then_shrinks(tmp_path):
    path = tmp_path / "old.db"
    # A database made before Lockbox turned incremental auto-vacuum on: a
    # table exists before the app first connects, so the app's pragma no
    # longer changes the mode.
    old = sqlite3.connect(path)
    old.execute("PRAGMA auto_vacuum=NONE")
    old.execute("CREATE TABLE made_before (id INTEGER PRIMARY KEY)")
    old.close()
    with sqlite_app(path) as app:
        assert pragma(app, "auto_vacuum") == space.AUTO_VACUUM_NONE
        owner_id = AuthActions(app, None).create_user()
        insert_file(app, owner_id, random_bytes(4 * MIB))
        delete_all_files(app)
        bloated = footprint(app)
        with app.app_context():
            assert space.release_free_pages() == 0
            assert "storage vacuum" in space.compact(0)
        assert footprint(app) == bloated

        result = app.test_cli_runner().invoke(args=["storage", "vacuum"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("Converted old.db to incremental auto-vacuum")
        assert pragma(app, "auto_vacuum") == space.AUTO_VACUUM_INCREMENTAL
        assert footprint(app) < bloated - 3 * MIB

        # From now on deleted files' pages go back without a VACUUM.
        insert_file(app, owner_id, random_bytes(4 * MIB))
        grown = footprint(app)
        delete_all_files(app)
        with app.app_context():
            assert space.release_free_pages(pause=0) >= 4 * MIB
        assert footprint(app) < grown - 3 * MIB

        again = app.test_cli_runner().invoke(args=["storage", "vacuum"])
        assert again.output.startswith("Nothing to do: old.db already uses")


def test_the_report_has_a_row_per_table_that_adds_up(app, token):
    insert_file(app, user_id(app), random_bytes(2 * MIB))
    report = tables(app)
    assert {"file_chunk", "stored_file", "user"} <= set(report)
    for table in report.values():
        assert table.allocated >= table.used >= 0, table
        assert table.free >= 0, table
        assert table.allocated == table.used + table.free, table
    assert report["file_chunk"].used >= 2 * MIB
    if is_sqlite(app):
        whole = report["lockbox.db (whole file)"]
        assert whole.allocated == pragma(app, "page_count") * pragma(app, "page_size")
        assert whole.free == pragma(app, "freelist_count") * pragma(app, "page_size")
        assert sum(t.allocated for t in report.values() if t is not whole) <= (
            whole.allocated
        )


def test_the_storage_report_command_prints_a_line_per_table(app, token, runner):
    insert_file(app, user_id(app), random_bytes(MIB))
    result = runner.invoke(args=["storage", "report"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    chunks = next(line for line in lines if line.startswith("file_chunk: "))
    assert re.fullmatch(
        r"file_chunk: \d+\.\d [KMG]iB \(\d+ bytes\) allocated, .+ used, .+ free", chunks
    ), chunks


def test_compact_is_not_worth_it_below_the_threshold(app, token, runner):
    file_id = insert_file(app, user_id(app), random_bytes(2 * MIB))
    insert_file(app, user_id(app), random_bytes(MIB))
    delete_all_files_but(app, keep=file_id)
    before = rebuild_marker(app)

    result = runner.invoke(args=["storage", "compact", "--min-free", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Not worth it: ")
    assert "under --min-free 100%. Nothing changed." in result.output
    assert rebuild_marker(app) == before


def test_release_free_pages_is_safe_on_any_database(app, token):
    insert_file(app, user_id(app), random_bytes(MIB))
    delete_all_files(app)
    with app.app_context():
        given_back = space.release_free_pages(pause=0)
    if is_sqlite(app):
        assert given_back >= MIB
    else:
        assert given_back == 0


def test_vacuum_on_mariadb_or_a_new_sqlite_database_has_nothing_to_do(app, runner):
    result = runner.invoke(args=["storage", "vacuum"])
    assert result.exit_code == 0, result.output
    if is_sqlite(app):
        assert result.output == (
            "Nothing to do: lockbox.db already uses incremental auto-vacuum "
            "(`flask files gc` gives its free pages back).\n"
        )
    else:
        assert result.output.startswith("Nothing to do: MariaDB ")


def test_compact_takes_only_a_galera_method_it_knows(app):
    with app.app_context(), pytest.raises(ValueError, match="TOI, RSU"):
        space.compact(0, galera_method="NBO")


@pytest.fixture
def account_without_process(mysql_database):
    """The URL of an account that may do anything in the test database but
    has no PROCESS privilege, as an app's own account should not."""
    root = sa.create_engine(mysql_database)
    url = sa.engine.make_url(mysql_database).set(
        username=f"space_{uuid.uuid4().hex[:8]}", password=uuid.uuid4().hex
    )
    account = f"'{url.username}'@'%'"
    with root.begin() as connection:
        connection.execute(
            sa.text(f"CREATE USER {account} IDENTIFIED BY :password"),
            {"password": url.password},
        )
        connection.execute(sa.text(f"GRANT ALL ON `{url.database}`.* TO {account}"))
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with root.begin() as connection:
            connection.execute(sa.text(f"DROP USER {account}"))
        root.dispose()


def test_without_the_process_privilege_the_report_reads_the_statistics(
    account_without_process,
):
    app = make_app(account_without_process)
    try:
        insert_file(app, AuthActions(app, None).create_user(), random_bytes(MIB))
        # InnoDB may be purging earlier tests' rows meanwhile: the report is
        # compared with statistics that held still around it.
        for _ in range(20):
            earlier = statistics(app)
            report = tables(app)
            if statistics(app) == earlier:
                break
        else:
            pytest.fail("the statistics kept changing")
    finally:
        empty_tables(app)
    assert set(report) == set(earlier)
    for name, table in report.items():
        assert (table.allocated, table.used, table.free) == earlier[name]


def statistics(app) -> dict[str, tuple[int, int, int]]:
    """information_schema.TABLES' figures for each table of the app's
    database: (data + index + free, data + index, free)."""
    with app.app_context():
        return {
            name: (data + index + free, data + index, free)
            for name, data, index, free in db.session.execute(
                sa.text(
                    "SELECT TABLE_NAME, DATA_LENGTH, INDEX_LENGTH, DATA_FREE"
                    " FROM information_schema.TABLES"
                    " WHERE TABLE_SCHEMA = DATABASE()"
                )
            )
        }


def test_a_rebuild_gives_up_when_a_transaction_keeps_the_table(
    mysql_database, monkeypatch
):
    monkeypatch.setattr(space, "LOCK_WAIT_SECONDS", 1)
    app = make_app(mysql_database)
    try:
        insert_file(app, AuthActions(app, None).create_user(), random_bytes(MIB))
        with app.app_context():
            before = rebuild_marker(app)
            with db.engine.connect() as reader:
                # A transaction that read the table holds its metadata lock
                # until it ends; the rebuild needs it alone at the last.
                reader.execute(sa.select(FileChunk.seq).limit(1)).all()
                with pytest.raises(space.Busy, match="stayed in use for 1 s"):
                    space.compact(0)
                reader.rollback()
            assert rebuild_marker(app) == before
            # No connection went back to the pool with the rebuild's setting.
            db.session.remove()
            with contextlib.ExitStack() as stack:
                pooled = [stack.enter_context(db.engine.connect()) for _ in range(3)]
                waits = [
                    connection.exec_driver_sql(
                        "SELECT @@SESSION.lock_wait_timeout"
                    ).scalar()
                    for connection in pooled
                ]
            assert 1 not in waits
    finally:
        empty_tables(app)
