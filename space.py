"""Space that comes back: what the database has allocated against what its
rows use, and giving the difference back to the file system (SQLite's free
pages, a MariaDB table rebuilt online).

Deleting a file deletes its chunk rows, but neither database gives the space
back to the file system by itself: SQLite keeps the pages on its free list,
InnoDB keeps the extents in the table's tablespace (its ``.ibd`` file, with
``innodb_file_per_table``). Both reuse that space for new rows, so this
matters after a large deletion that will not be filled again soon.

- SQLite: a database Lockbox made uses incremental auto-vacuum (models.py
  sets it before the first table exists), so ``release_free_pages`` can give
  the free pages back a few MiB at a time while the app serves; `files gc`
  calls it. A database made before that is converted once, with a full
  VACUUM (``convert_sqlite``, `flask storage vacuum`).
- MariaDB: ``compact`` rebuilds the chunk table (``ALTER TABLE ... FORCE``,
  online on a single server) into a new tablespace holding only the live
  rows, when enough of it is free. On a Galera cluster the rebuild is a
  schema change, and how it replicates (``wsrep_OSU_method``) decides what
  the rest of the cluster feels: docs/deploy.md.

Every figure is in bytes; the functions below say where each comes from.
"""

import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Connection, bindparam, text
from sqlalchemy.exc import DBAPIError, OperationalError

from formats import format_size
from models import FileChunk, db, error_code

CHUNK_TABLE = FileChunk.__tablename__

# SQLite's PRAGMA auto_vacuum values.
AUTO_VACUUM_NONE, AUTO_VACUUM_FULL, AUTO_VACUUM_INCREMENTAL = 0, 1, 2
# Each step of release_free_pages gives back this much (in whole pages) in
# one short write transaction: a few milliseconds of the write lock.
STEP_BYTES = 4 * 1024 * 1024
# At most this many steps in one call (1 GiB with 4 KiB pages): `files gc`
# runs often and need not give back everything at once.
MAX_STEPS = 256
# Between two steps the write lock is left free this long. A writer that
# found it taken waits in SQLite's busy handler, which tries again every few
# to 100 ms: a pause shorter than that would let the next step take the lock
# before the writer tries again, and a long run could starve it.
STEP_PAUSE_SECONDS = 0.1

# How long the rebuild waits for the table's metadata lock (held by any
# transaction that touched the table) before giving up. While it waits every
# new query on the table queues behind it, so it must not wait long; the
# server's own default is a day.
LOCK_WAIT_SECONDS = 10
# MariaDB's (and MySQL's) "Lock wait timeout exceeded", "Access denied; you
# need (at least one of) the PROCESS privilege(s)" and "Unknown table".
LOCK_WAIT_TIMEOUT = 1205
ACCESS_DENIED = 1227
UNKNOWN_TABLE = 1109
GALERA_METHODS = ("TOI", "RSU")


@dataclass(frozen=True)
class TableSpace:
    """One table's space, in bytes: ``allocated`` to it, ``used`` by what it
    holds, and ``free``: allocated but holding nothing (allocated = used +
    free)."""

    name: str
    allocated: int
    used: int
    free: int

    @property
    def free_share(self) -> float:
        """The free part of the allocated space, from 0 to 1."""
        return self.free / self.allocated if self.allocated else 0.0


class ChooseMethod(ValueError):
    """A rebuild asked of a Galera node without saying TOI or RSU."""


class Busy(RuntimeError):
    """The rebuild or VACUUM could not have the lock it needs in time: other
    connections were using the table or the database. Nothing changed."""


def report() -> list[TableSpace]:
    """Each table's space, the largest first.

    MariaDB: one row per table of the schema. SQLite: one row per table when
    the linked SQLite has the ``dbstat`` table (which reads every table's
    and index's pages: 0.07 s for 200 MiB here), then one for the whole
    file, whose free part is what ``compact`` and `files gc` give back.
    """
    if _is_sqlite():
        return _sqlite_report()
    return _mariadb_report()


def compact(min_free: float, galera_method: str | None = None) -> str:
    """Give the chunk table's free space back to the file system when at least
    ``min_free`` (0 to 1) of its space is free; what was done, in a sentence
    or two.

    MariaDB: ``ALTER TABLE file_chunk FORCE, ALGORITHM=INPLACE, LOCK=NONE``,
    which copies the live rows into a new tablespace and drops the old one;
    on a single server uploads and downloads go on meanwhile. On a Galera
    node it is a schema change, run under the session's ``wsrep_OSU_method``
    (TOI unless the server is set otherwise) or under ``galera_method``
    ("TOI" or "RSU") for this statement alone. Writes wait for it: on every
    node under TOI, on this node under RSU; the answer says which. SQLite:
    the file's free pages, all of them (``release_free_pages`` without its
    step limit).

    Raises Busy when the table stayed in use for LOCK_WAIT_SECONDS.
    """
    if galera_method is not None and galera_method.upper() not in GALERA_METHODS:
        raise ValueError(f"galera_method must be one of {', '.join(GALERA_METHODS)}")
    if _is_sqlite():
        return _compact_sqlite(min_free)
    return _compact_mariadb(min_free, galera_method)


def release_free_pages(
    step_pages: int | None = None,
    max_steps: int | None = MAX_STEPS,
    pause: float = STEP_PAUSE_SECONDS,
) -> int:
    """SQLite: give the file's free pages back to the file system, in steps of
    ``step_pages`` (STEP_BYTES' worth when None), each its own short write
    transaction, with ``pause`` seconds between two steps; stop when no free
    page is left or after ``max_steps`` (None: no limit). Returns the bytes
    given back.

    Does nothing and returns 0 on MariaDB (``compact`` rebuilds the table
    there), and on a SQLite database without incremental auto-vacuum, whose
    free pages only a VACUUM gives back (``convert_sqlite`` turns it on).
    Safe to call at any time; the app may go on serving meanwhile.
    """
    if not _is_sqlite():
        return 0
    with _autocommit() as connection:
        if _pragma(connection, "auto_vacuum") != AUTO_VACUUM_INCREMENTAL:
            return 0
        page_size = _pragma(connection, "page_size")
        step = step_pages or max(1, STEP_BYTES // page_size)
        free = _pragma(connection, "freelist_count")
        released = steps = 0
        while free and (max_steps is None or steps < max_steps):
            if steps:
                time.sleep(pause)
            _run_to_the_end(connection, f"PRAGMA incremental_vacuum({int(step)})")
            steps += 1
            left = _pragma(connection, "freelist_count")
            # Pages other connections freed meanwhile are not counted.
            released += max(free - left, 0)
            free = left
        if steps:
            _checkpoint(connection)
    if released:
        current_app.logger.info(
            "Gave %d free pages back to the file system (steps: %d)", released, steps
        )
    return released * page_size


def convert_sqlite() -> str:
    """SQLite: turn on incremental auto-vacuum for a database made before
    Lockbox did, with a full VACUUM (which also gives back every free page);
    what was done and the file's size before and after.

    The VACUUM writes a new copy of the whole database (free disk space twice
    its size, for the copy and the write-ahead log) and holds the write lock
    throughout: run it with the app stopped. Raises Busy when another
    connection kept the database locked. On MariaDB, or on a database that
    already frees pages by itself, it does nothing and says so.
    """
    if not _is_sqlite():
        return (
            "Nothing to do: MariaDB has no VACUUM; `flask storage compact` "
            "rebuilds the chunk table to give its free space back."
        )
    with _autocommit() as connection:
        path = _database_file(connection)
        name = os.path.basename(path) if path else "The in-memory database"
        mode = _pragma(connection, "auto_vacuum")
        if mode == AUTO_VACUUM_INCREMENTAL:
            return (
                f"Nothing to do: {name} already uses incremental auto-vacuum "
                "(`flask files gc` gives its free pages back)."
            )
        if mode == AUTO_VACUUM_FULL:
            return (
                f"Nothing to do: {name} uses full auto-vacuum, which gives free "
                "pages back at every commit."
            )
        before = _file_size(path)
        # The mode takes effect at the VACUUM, which rewrites every page with
        # the pointer-map pages that auto-vacuum needs. VACUUM cannot run
        # inside a transaction: the connection is in autocommit.
        connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
        try:
            connection.exec_driver_sql("VACUUM")
        except OperationalError as error:
            if getattr(error.orig, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise
            raise Busy(
                f"{name} stayed locked by another connection ({error.orig}): "
                "stop the app and run it again. Nothing changed."
            ) from None
        # In WAL mode the new copy went to the write-ahead log: into the
        # database file with it, and the log emptied.
        _checkpoint(connection)
        after = _file_size(path)
        mode = _pragma(connection, "auto_vacuum")
    if mode != AUTO_VACUUM_INCREMENTAL:
        raise RuntimeError(f"VACUUM left {name} with auto_vacuum={mode}")
    current_app.logger.info("Converted %s to incremental auto-vacuum", name)
    return (
        f"Converted {name} to incremental auto-vacuum (VACUUM): "
        f"{format_size(before)} before, {format_size(after)} after. "
        "From now on `flask files gc` gives free pages back."
    )


# SQLite


def _is_sqlite() -> bool:
    """Whether the app's database is SQLite (else MariaDB or MySQL)."""
    return db.engine.dialect.name == "sqlite"


@contextmanager
def _autocommit() -> Iterator[Connection]:
    """A connection of the app's engine (with its pragmas) in autocommit: each
    statement its own transaction, and none open around VACUUM."""
    with db.engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


def _pragma(connection: Connection, name: str) -> int:
    """The integer value of ``PRAGMA name``."""
    return int(connection.exec_driver_sql(f"PRAGMA {name}").scalar_one())


def _run_to_the_end(connection: Connection, statement: str) -> None:
    """Run a statement that works a step at a time until it is done.

    ``PRAGMA incremental_vacuum(N)`` gives back one page per step of the
    statement and returns no columns, so a cursor's ``execute``, which takes
    the first step, would give back a single page. sqlite3's
    ``executescript`` runs each statement to its end.
    """
    connection.connection.driver_connection.executescript(statement)  # type: ignore[union-attr]


def _checkpoint(connection: Connection) -> None:
    """Copy the write-ahead log into the database file and empty it: the file
    shrinks to the pages the database still has (in WAL mode it does so only
    when a checkpoint completes) and the log gives back what it had grown to.

    A TRUNCATE checkpoint waits for readers to leave the log, holding off new
    writers meanwhile, at most the connection's busy timeout; readers here
    are short. Does nothing outside WAL mode.
    """
    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()


def _database_file(connection: Connection) -> str:
    """The path of the main database file ('' in memory)."""
    for _, schema, path in connection.exec_driver_sql("PRAGMA database_list"):
        if schema == "main":
            return str(path or "")
    return ""


def _file_size(path: str) -> int:
    """Bytes on disk of the database file and its write-ahead log."""
    if not path:
        return 0
    return sum(
        os.path.getsize(name) for name in (path, path + "-wal") if os.path.exists(name)
    )


def _sqlite_report() -> list[TableSpace]:
    """The tables' pages (dbstat, when the linked SQLite has it), then the
    whole file."""
    with _autocommit() as connection:
        return [*_sqlite_tables(connection), _sqlite_file(connection)]


def _sqlite_file(connection: Connection) -> TableSpace:
    """The whole database file, by SQLite's count of its pages: free are the
    pages on the free list, what incremental auto-vacuum gives back."""
    page_size = _pragma(connection, "page_size")
    pages = _pragma(connection, "page_count")
    free_pages = _pragma(connection, "freelist_count")
    name = os.path.basename(_database_file(connection)) or "(in memory)"
    return TableSpace(
        name=f"{name} (whole file)",
        allocated=pages * page_size,
        used=(pages - free_pages) * page_size,
        free=free_pages * page_size,
    )


def _sqlite_tables(connection: Connection) -> list[TableSpace]:
    """Each table's pages with its indexes' (dbstat's b-trees added up by the
    table they belong to); free: the bytes of those pages holding nothing,
    which only a VACUUM would give back. [] without dbstat."""
    has_dbstat = connection.exec_driver_sql(
        "SELECT sqlite_compileoption_used('ENABLE_DBSTAT_VTAB')"
    ).scalar_one()
    if not has_dbstat:
        return []
    owners: dict[str, str] = {
        name: table
        for name, table in connection.exec_driver_sql(
            "SELECT name, tbl_name FROM sqlite_master"
        )
    }
    allocated: dict[str, int] = defaultdict(int)
    free: dict[str, int] = defaultdict(int)
    # aggregate: one row per b-tree (a table or an index), its pages added up.
    for name, size, unused in connection.exec_driver_sql(
        "SELECT name, pgsize, unused FROM dbstat WHERE aggregate = TRUE"
    ):
        table = owners.get(name, name)  # sqlite_schema is in no row of its own
        allocated[table] += size
        free[table] += unused
    return sorted(
        (
            TableSpace(name, allocated[name], allocated[name] - free[name], free[name])
            for name in allocated
        ),
        key=lambda table: (-table.allocated, table.name),
    )


def _compact_sqlite(min_free: float) -> str:
    """The free pages, all of them, when at least ``min_free`` of the file."""
    with _autocommit() as connection:
        mode = _pragma(connection, "auto_vacuum")
        before = _sqlite_file(connection)
    if mode != AUTO_VACUUM_INCREMENTAL:
        return (
            "Nothing given back: this database was made without incremental "
            "auto-vacuum; convert it once with `flask storage vacuum`."
        )
    if not before.free:
        return "Nothing to give back: the database file has no free pages."
    if before.free_share < min_free:
        return _not_worth_it(before, min_free)
    released = release_free_pages(max_steps=None)
    with _autocommit() as connection:
        after = _sqlite_file(connection)
    return (
        f"Gave {format_size(released)} of free pages back to the file system: "
        f"the database went from {format_size(before.allocated)} to "
        f"{format_size(after.allocated)}."
    )


def _not_worth_it(table: TableSpace, min_free: float, note: str = "") -> str:
    """Why nothing was done: too little of ``table`` is free."""
    return (
        f"Not worth it: {table.name} has {format_size(table.free)} free of "
        f"{format_size(table.allocated)} ({table.free_share:.1%}), under "
        f"--min-free {min_free:.0%}. Nothing changed.{note}"
    )


# MariaDB


def _mariadb_report() -> list[TableSpace]:
    """Each table of the schema: its tablespace file against the free extents
    in it; from the table statistics where the file is not to be had."""
    schema = db.engine.url.database or ""
    with db.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT TABLE_NAME, DATA_LENGTH, INDEX_LENGTH, DATA_FREE"
                " FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = :schema AND TABLE_TYPE = 'BASE TABLE'"
            ),
            {"schema": schema},
        ).all()
        files = _tablespace_files(connection, schema, [row[0] for row in rows])
    tables = []
    for name, data, index, data_free in rows:
        free = int(data_free or 0)
        if name in files:
            # The .ibd file as the file system has it, and the extents in it
            # that no index holds (InnoDB's own count, read afresh): both
            # current, so "used" is the rest.
            allocated = max(files[name], free)
            used = allocated - free
        else:
            # The statistics: what the indexes hold as of their last update
            # (ANALYZE TABLE, or InnoDB's own after a tenth of the rows
            # changed), plus the free extents.
            used = int(data or 0) + int(index or 0)
            allocated = used + free
        tables.append(TableSpace(name, allocated, used, free))
    return sorted(tables, key=lambda table: (-table.allocated, table.name))


def _tablespace_files(
    connection: Connection, schema: str, tables: list[str]
) -> dict[str, int]:
    """The size of each table's own tablespace file (innodb_file_per_table),
    by table name, as the server reads it from the file system; {} when the
    account may not read them (they need the PROCESS privilege), and no
    entry for a table in a shared tablespace."""
    encoded = {table: _tablespace_name(schema, table) for table in tables}
    names = {name: table for table, name in encoded.items() if name is not None}
    if not names:
        return {}
    version = str(connection.exec_driver_sql("SELECT VERSION()").scalar())
    # MariaDB 10.6+ fills its old table from the files themselves; MySQL 8
    # has the same figures under another name.
    source = "INNODB_SYS_TABLESPACES" if "MariaDB" in version else "INNODB_TABLESPACES"
    try:
        rows = connection.execute(
            text(
                f"SELECT NAME, FILE_SIZE FROM information_schema.{source}"
                " WHERE NAME IN :names"
            ).bindparams(bindparam("names", expanding=True)),
            {"names": list(names)},
        ).all()
    except DBAPIError as error:
        if error_code(error) not in (ACCESS_DENIED, UNKNOWN_TABLE):
            raise
        connection.rollback()
        return {}
    return {names[name]: int(size) for name, size in rows}


def _tablespace_name(schema: str, table: str) -> str | None:
    """InnoDB's name for a table's own tablespace: ``schema/table``, each
    in the server's file-name encoding. Letters, digits and ``_`` stay as
    they are and other ASCII characters become ``@`` and four hex digits;
    None for a name with other characters (their encoding is not done here:
    such a table is reported from its statistics)."""
    encoded = []
    for name in (schema, table):
        if not name.isascii():
            return None
        encoded.append(
            "".join(c if c.isalnum() or c == "_" else f"@{ord(c):04x}" for c in name)
        )
    return "/".join(encoded)


def _chunk_table(tables: list[TableSpace]) -> TableSpace:
    """The chunk table's row of a report."""
    for table in tables:
        if table.name == CHUNK_TABLE:
            return table
    raise RuntimeError(f"No table {CHUNK_TABLE} in the database")


def _compact_mariadb(min_free: float, galera_method: str | None) -> str:
    """Rebuild the chunk table when at least ``min_free`` of it is free."""
    before = _chunk_table(_mariadb_report())
    if before.free_share < min_free:
        # InnoDB frees a deleted row's pages in the background (purge), and
        # counts whole free extents only.
        return _not_worth_it(
            before,
            min_free,
            " (Space of rows deleted in the last minutes counts as free once "
            "InnoDB has purged them.)",
        )
    with db.engine.connect() as connection:
        galera = _galera_method(connection)
        if galera is not None and galera_method is None:
            # Under TOI every write on the cluster waits for the rebuild;
            # nobody should find that out by running a maintenance command.
            raise ChooseMethod(
                "This is a Galera node: say how to rebuild. rsu: this node "
                "alone, out of the cluster's replication meanwhile (take its "
                "instance out of the proxy first, then do each node in turn); "
                "toi: every node at once, and every write on the cluster waits "
                "until it is done (docs/deploy.md, compacting on Galera)."
            )
        settings: dict[str, str | int] = {"lock_wait_timeout": LOCK_WAIT_SECONDS}
        if galera is not None and galera_method is not None:
            settings["wsrep_OSU_method"] = galera_method.upper()
        method = str(settings.get("wsrep_OSU_method", galera or ""))
        started = time.monotonic()
        try:
            with _session_settings(connection, settings):
                connection.exec_driver_sql(
                    f"ALTER TABLE {CHUNK_TABLE} FORCE, ALGORITHM=INPLACE, LOCK=NONE"
                )
        except DBAPIError as error:
            if error_code(error) != LOCK_WAIT_TIMEOUT:
                raise
            raise Busy(
                f"{CHUNK_TABLE} stayed in use for {LOCK_WAIT_SECONDS} s (a long "
                "transaction or download held it): not rebuilt. Try again later."
            ) from None
        took = time.monotonic() - started
    after = _chunk_table(_mariadb_report())
    current_app.logger.info(
        "Rebuilt %s: %d bytes allocated before, %d after (%.1f s)",
        CHUNK_TABLE,
        before.allocated,
        after.allocated,
        took,
    )
    outcome = (
        f"Rebuilt {CHUNK_TABLE} in {took:.1f} s: {format_size(before.allocated)} "
        f"allocated before, of which {format_size(before.free)} free; "
        f"{format_size(after.allocated)} after."
    )
    if galera is None:
        return outcome
    return f"{outcome} {_galera_note(method)}"


@contextmanager
def _session_settings(
    connection: Connection, settings: dict[str, str | int]
) -> Iterator[None]:
    """The session variables ``settings`` for the block, then put back as
    they were: the pooled connection goes back to the pool as it came."""
    names = list(settings)
    saved = connection.exec_driver_sql(
        "SELECT " + ", ".join(f"@@SESSION.{name}" for name in names)
    ).one()
    for name, value in settings.items():
        connection.execute(text(f"SET SESSION {name} = :value"), {"value": value})
    try:
        yield
    finally:
        if not connection.invalidated:
            for name, value in zip(names, saved, strict=True):
                connection.execute(
                    text(f"SET SESSION {name} = :value"), {"value": value}
                )


def _galera_method(connection: Connection) -> str | None:
    """This session's wsrep_OSU_method on a Galera node; None elsewhere."""
    row = connection.exec_driver_sql("SHOW VARIABLES LIKE 'wsrep_on'").first()
    if row is None or str(row[1]).upper() != "ON":
        return None
    return str(connection.exec_driver_sql("SELECT @@SESSION.wsrep_OSU_method").scalar())


def _galera_note(method: str) -> str:
    """What a rebuild under ``method`` meant for the rest of the cluster."""
    if method == "RSU":
        return (
            "Galera, wsrep_OSU_method=RSU: rebuilt on this node only, which "
            "left the cluster's replication meanwhile (no write or causal read "
            "went through it; the other nodes went on) and caught up after; "
            "run the same against each other node in turn (docs/deploy.md)."
        )
    return (
        f"Galera, wsrep_OSU_method={method}: the rebuild replicated as a schema "
        "change and ran on every node at once; until it was done no node "
        "committed a write or answered a causal read, which every Lockbox "
        "request begins with (docs/deploy.md: RSU, node by node)."
    )
