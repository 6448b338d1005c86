"""The life of a file's bytes in chunk rows: begin, append, finish, discard, read.

Every way bytes come in (the form upload, resumable uploads) and go out (every
download) goes through here; one module owns a file's life, as 0x0's
``File.store`` does:

- ``begin()`` makes the file's row, hidden (``complete`` false) and committed;
- a ``ChunkWriter`` appends bytes at the file's end, in one request or many,
  cutting them into chunk rows of the file's ``chunk_size`` and keeping the
  stored size and the SHA-256 so far on the row (its ``ChunkStorer`` inserts
  the rows on a thread and a connection of its own);
- ``finish()`` checks the digest and makes the file visible;
- ``discard()`` and ``delete_stored_files()`` remove files with every chunk;
- ``read_range()`` streams bytes ``start`` to ``stop`` back out.

Chunk rows are the same however the bytes arrived: a file appended in pieces
that do not end on a chunk boundary gets exactly the rows of one upload (the
last, short row is rebuilt whenever more bytes follow it). Only the first
``size`` bytes of a file's rows count: an append cut off by a crash may leave
rows past the end, which the next append replaces.
"""

import functools
import mimetypes
import queue
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Connection, Engine, Executable, bindparam, func
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from werkzeug.http import parse_options_header

import quotas
import sealing
import storage_keys
from digests import ResumableSHA256
from errors import ApiError
from metrics import DOWNLOADED, UPLOAD_FAILURES, UPLOADED
from models import (
    CONFLICT_ATTEMPTS,
    MAX_INT_ID,
    FileChunk,
    StoredFile,
    User,
    db,
    is_retryable,
    retry_on_conflict,
    retry_pause,
    rowcount,
    utcnow,
)

# Commit every few chunks while they arrive fast (short transactions, yet not an
# fsync per chunk), and whenever the storer has to wait for the next one.
CHUNKS_PER_COMMIT = 8
# What the storer is handed: (seq, chunk, size, hash state) for a chunk; with
# the chunk None, the end (commit, recording size and hash); ABORT: stop.
ABORT = (None, None, None, None)
MAX_FILENAME_LENGTH = 255
MIMETYPE_RE = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$"
)


def clean_filename(name: str) -> str:
    """The name a file is kept under: last path component, printable, <= 255."""
    # Browsers escape these three in multipart filenames (HTML form encoding).
    name = name.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    # Control and format characters (CR, LF, NUL, bidi overrides) never survive.
    name = "".join(
        ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs")
    )
    name = name.strip()
    if name in ("", ".", ".."):
        return "unnamed"
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) <= 16:
            keep = MAX_FILENAME_LENGTH - len(extension) - 1
            name = f"{stem[:keep]}.{extension}"
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name


def content_type_for(declared: str | None, filename: str) -> str:
    """The declared media type when it is well-formed, else a guess from the name."""
    mimetype, _ = parse_options_header(declared or "")
    mimetype = mimetype.lower()
    if MIMETYPE_RE.match(mimetype):
        return mimetype
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def begin(
    owner_id: int,
    filename: str,
    declared_type: str | None,
    description: str = "",
    reserve: int = 0,
    commit: bool = True,
    expires_at: datetime | None = None,
) -> StoredFile:
    """A new, empty, hidden file: append its bytes with a ChunkWriter.

    ``filename`` and ``declared_type`` are as the client sent them; the file is
    kept under the cleaned name and a well-formed media type. ``reserve``
    bytes of the owner's quota are held for it (a 413 when there is no room,
    and nothing is kept). Committed, unless the caller adds to the same
    transaction (``commit`` false).
    """
    filename = clean_filename(filename)

    def new_file() -> StoredFile:
        stored_file = StoredFile(
            owner_id=owner_id,
            filename=filename,
            content_type=content_type_for(declared_type, filename),
            description=description,
            chunk_size=current_app.config["CHUNK_SIZE"],
            size=0,
            complete=False,
            expires_at=expires_at,
        )
        db.session.add(stored_file)
        try:
            quotas.reserve(stored_file, reserve)
        except ApiError:
            db.session.rollback()
            raise
        return stored_file

    if commit:
        # On a Galera cluster the new row can conflict with a change to the
        # owner's row made through another node (signing out everywhere):
        # the commit is refused, and simply made again.
        return retry_on_conflict(new_file)()
    stored_file = new_file()
    db.session.flush()
    return stored_file


class ConcurrentAppend(RuntimeError):
    """Another request appended to the same file while this one was writing."""


class ChunkWriter:
    """Appends bytes at the end of a file that is not finished yet.

    The request thread (this class) hashes the bytes and cuts them into
    chunks; a ChunkStorer, on a thread and a connection of its own, inserts
    them. The two overlap, so reading the request and the database's work
    proceed side by side; the storer's queue of one chunk between them keeps
    memory at a few chunks whatever the size, and what is left to store once
    the last byte is read (which every piece of a resumable upload waits for)
    at two chunks at most.

    With a ``limit`` (quotas.SizeLimit) every write is admitted by it first:
    the file grows only as far as MAX_FILE_SIZE and the owner's quota allow,
    and the write that would go further is refused with the limit's 413.

    With ``record_progress`` each of the storer's commits also records the
    size and the hash so far on the file, so that what was stored survives a
    dropped connection or a crash; without it they are recorded by
    ``finish(keep=True)`` only, and ``finish(keep=False)`` returns the file
    to where it was.
    """

    def __init__(
        self,
        stored_file: StoredFile,
        record_progress: bool = False,
        limit: "quotas.SizeLimit | None" = None,
    ):
        self.stored_file = stored_file
        self.file_id = stored_file.id
        self.chunk_size = stored_file.chunk_size
        self.limit = limit
        self.start = self.size = stored_file.size
        self._start_state = stored_file.hash_state
        self._hasher = ResumableSHA256.from_state(stored_file.hash_state)
        self._engine = db.engine
        storage_keys.ready()
        self._keys = sealing.keys()
        # The file may end inside a chunk: that chunk is rebuilt, its stored
        # bytes first (already hashed), then the new ones.
        self._first_seq = self._seq = self.size // self.chunk_size
        self._tail = self._stored_tail()
        db.session.commit()  # no transaction left open while the client sends
        self._pieces: list[bytes] = [self._tail] if self._tail else []
        self._buffered = len(self._tail)
        self._storer = ChunkStorer(
            self._engine, self._keys, self.file_id, self.size, record_progress
        )

    def _stored_tail(self) -> bytes:
        """The stored bytes of the file's last, partly filled chunk (if any)."""
        length = self.size % self.chunk_size
        if not length:
            return b""
        key_id, data = db.session.execute(
            db.select(FileChunk.key_id, FileChunk.data).filter_by(
                file_id=self.file_id, seq=self._first_seq
            )
        ).one()
        try:
            data = self._keys.open_chunk(self.file_id, self._first_seq, key_id, data)
            if len(data) < length:
                raise sealing.DamagedData(
                    f"chunk {self._first_seq} holds {len(data)} bytes, fewer than "
                    "the file's size says"
                )
        except sealing.DamagedData as error:
            raise damaged(self.file_id, error) from None
        return bytes(data[:length])

    @property
    def sha256(self) -> str:
        """The digest of the file's bytes so far."""
        return self._hasher.hexdigest()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes to the file, handing every chunk that fills to the storer."""
        view = memoryview(data)
        if self.limit is not None:
            self.limit.admit(self.size + len(view))
        while view:
            piece = view[: self.chunk_size - self._buffered]
            view = view[len(piece) :]
            self._hasher.update(piece)
            # The caller may reuse its buffer: keep a copy, unless it is bytes.
            whole = isinstance(data, bytes) and len(piece) == len(data)
            self._pieces.append(
                data if whole and isinstance(data, bytes) else bytes(piece)
            )
            self._buffered += len(piece)
            self.size += len(piece)
            if self._buffered == self.chunk_size:
                self._hand_over(self._take())

    def _take(self) -> bytes:
        """The buffered bytes as one chunk (a single copy)."""
        chunk = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces, self._buffered = [], 0
        return chunk

    def _hand_over(self, chunk: bytes | None) -> None:
        """Queue a chunk (None: the end), with the size and hash it completes."""
        self._storer.put(self._seq, chunk, self.size, self._hasher.state())
        if chunk is not None:
            self._seq += 1

    def finish(self, keep: bool = True) -> None:
        """Store what is buffered, then record size and hash (committed).

        With ``keep`` false (a piece that failed its checksum), everything this
        writer appended is undone instead and the file is as it was.
        """
        if not keep:
            self.close()
            self._undo()
            return
        if self._buffered:
            self._hand_over(self._take())
        self._hand_over(None)
        self._storer.join()
        self.stored_file.size = self.size
        self.stored_file.hash_state = self._hasher.state()

    def _undo(self) -> None:
        """Put back the rows, size and hash the file had before this writer."""
        written = list(range(self._first_seq, self._seq + 1))
        with self._engine.begin() as connection:
            # By primary key, not a range: a range delete locks the gap after
            # the file's last row, where another upload's rows go (a deadlock).
            connection.execute(
                db.delete(FileChunk).where(
                    FileChunk.file_id == self.file_id, FileChunk.seq.in_(written)
                )
            )
            if self._tail:
                connection.execute(
                    db.insert(FileChunk),
                    sealed_row(self._keys, self.file_id, self._first_seq, self._tail),
                )
            connection.execute(
                db.update(StoredFile)
                .where(StoredFile.id == self.file_id)
                .values(size=self.start, hash_state=self._start_state)
            )
        self.stored_file.size = self.start
        self.stored_file.hash_state = self._start_state

    def close(self) -> None:
        """Stop the storer, keeping nothing it had not committed; safe to call
        more than once."""
        self._storer.abort()


class ChunkStorer:
    """The storing side of a ChunkWriter: a thread with a connection of its
    own that inserts the chunks it is handed, in order.

    Everything here but the queue and ``error`` belongs to the storing
    thread; the request thread only puts chunks in the queue (``put``), waits
    for the end (``join``) or stops it (``abort``), and ``error`` is written
    once, by the storing thread, before it stops taking chunks for good.

    Chunks are committed every few, and before the storer waits for the next
    one: no transaction stays open while a slow or stalled client keeps the
    next chunk coming (on SQLite an open one would hold the database's only
    write lock, and every other writer would wait for it). With
    ``record_progress`` each commit also records the size and hash so far.
    Progress is recorded only over the size the file had when it was last
    seen: if another request appended to the file meanwhile, the commit fails
    (ConcurrentAppend) and nothing of this writer's stays.
    """

    def __init__(
        self,
        engine: Engine,
        keys: sealing.Keys,
        file_id: int,
        size: int,
        record_progress: bool,
    ):
        self.file_id = file_id
        self._keys = keys
        self.record_progress = record_progress
        self.error: BaseException | None = None
        self._engine = engine
        self._committed_size = size
        # Whether the storer has taken the end (or abort) marker.
        self._ended = False
        self._queue: queue.Queue[tuple] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._store_chunks, daemon=True)
        self._thread.start()

    # --- the request thread's side ---------------------------------------

    def put(self, seq: int, chunk: bytes | None, size: int, state: bytes) -> None:
        """Hand over chunk ``seq`` (None: the end), with the file's size and
        hash state once it is stored; the storer's error, if it failed."""
        if self.error is not None:
            raise self.error
        self._queue.put((seq, chunk, size, state))

    def join(self) -> None:
        """Wait for the storer to commit the end; its error, if it failed."""
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop the storer, rolling back what it had not committed."""
        if self._thread.is_alive():
            self._queue.put(ABORT)
            self._thread.join()

    # --- the storing thread ----------------------------------------------

    def _store_chunks(self) -> None:
        """Insert chunks in order until the end marker."""
        insert = chunk_upsert(self._engine.dialect.name)
        try:
            with self._engine.connect() as connection:
                try:
                    self._store_in(connection, insert)
                except BaseException:
                    # Drop the connection rather than roll back: on a server that
                    # has gone away the rollback fails too, and its error would
                    # replace this one. (read_range does the same.)
                    connection.invalidate()
                    raise
        except BaseException as error:
            self.error = error
            # Keep taking chunks so the request thread never blocks on a full
            # queue, up to its end or abort marker (unless that came already:
            # the last commit is what failed).
            while not self._ended:
                self._ended = self._queue.get()[1] is None

    def _store_in(self, connection: Connection, insert: Executable) -> None:
        """Insert the queued chunks on ``connection``, committing as they come,
        until the end marker (commit with the final size and hash) or the abort
        marker (roll back what is not committed).

        The chunks of the open transaction are kept until it commits: when the
        database undoes it for a conflict or a Galera cluster changing shape,
        they are inserted again and the commit retried (a few times)."""
        batch: list[dict] = []
        progress = None

        def commit(progress: tuple[int, bytes] | None) -> None:
            self._retrying(
                connection, insert, batch, lambda: self._commit(connection, progress)
            )
            batch.clear()

        while True:
            try:
                seq, chunk, size, state = self._queue.get_nowait()
            except queue.Empty:
                if batch:
                    commit(progress)
                seq, chunk, size, state = self._queue.get()  # waits on the client
            if chunk is None:
                self._ended = True
                break
            # Sealed once: a retry inserts the same row again.
            row = sealed_row(self._keys, self.file_id, seq, chunk)
            batch.append(row)
            self._retrying(
                connection,
                insert,
                batch,
                functools.partial(insert_chunk, connection, insert, row),
            )
            if self.record_progress:
                progress = (size, state)
            if len(batch) == CHUNKS_PER_COMMIT:
                commit(progress)
        if size is None:
            connection.rollback()
        elif batch or size != self._committed_size:
            commit((size, state))
        # else: the last commit recorded this very size (a commit is an fsync)

    def _retrying(
        self,
        connection: Connection,
        insert: Executable,
        batch: list[dict],
        action: Callable[[], object],
    ) -> None:
        """Run ``action``; when the database undid the transaction for a
        conflict or a cluster change, roll back, insert ``batch`` again (what
        the transaction held) and run it again."""
        attempt = 1
        while True:
            try:
                action()
                return
            except DBAPIError as error:
                if attempt >= CONFLICT_ATTEMPTS or not is_retryable(error):
                    raise
            connection.rollback()
            retry_pause(attempt)
            attempt += 1
            for row in batch:
                insert_chunk(connection, insert, row)

    def _commit(
        self, connection: Connection, progress: tuple[int, bytes] | None
    ) -> None:
        """Commit the chunks so far, with the progress that lets `files gc` tell a
        slow upload from a stalled one, and (when recorded) size and hash."""
        values: dict[str, object] = {"updated_at": utcnow()}
        where = [StoredFile.id == self.file_id]
        if progress is not None:
            values["size"], values["hash_state"] = progress
            where.append(StoredFile.size == self._committed_size)
        updated = connection.execute(db.update(StoredFile).where(*where).values(values))
        if progress is not None and updated.rowcount != 1:
            raise ConcurrentAppend(f"file {self.file_id} changed under this append")
        connection.commit()
        if progress is not None:
            self._committed_size = progress[0]


def insert_chunk(connection: Connection, insert: Executable, row: dict) -> None:
    """Insert one chunk row (or, with chunk_upsert, replace the one stored
    with that seq)."""
    connection.execute(insert, row)


def sealed_row(keys: sealing.Keys, file_id: int, seq: int, chunk: bytes) -> dict:
    """Chunk ``seq`` of a file as its row is inserted: sealed under the
    current storage key (sealing.py), or in clear when there is none."""
    key_id, data = keys.seal_chunk(file_id, seq, chunk)
    return {"file_id": file_id, "seq": seq, "data": data, "key_id": key_id}


def chunk_upsert(dialect: str) -> Executable:
    """An INSERT of a chunk row that replaces a stored row with the same seq.

    Appending rebuilds a file's last, short chunk, and may meet rows a crash
    left past the end: both are replaced in place, never deleted first (a
    delete of a range of rows locks the gap after them, where concurrent
    uploads insert, and MariaDB then undoes one of them as a deadlock). A
    replaced row's version goes up: `storage rekey` re-seals a row only if it
    is still the one it read.
    """
    if dialect == "sqlite":
        insert = sqlite.insert(FileChunk)
        return insert.on_conflict_do_update(
            index_elements=["file_id", "seq"],
            set_={
                "data": insert.excluded.data,
                "key_id": insert.excluded.key_id,
                "version": FileChunk.version + 1,
            },
        )
    if dialect in ("mysql", "mariadb"):
        upsert = mysql.insert(FileChunk)
        return upsert.on_duplicate_key_update(
            data=upsert.inserted.data,
            key_id=upsert.inserted.key_id,
            version=FileChunk.version + 1,
        )
    raise NotImplementedError(f"No upsert for the {dialect} dialect")


# What else happens in the transaction that makes a file visible, for every
# file (notifications.py tells an upload request's owner this way, so that a
# file never arrives untold nor is told of without arriving).
_on_finish: list[Callable[[StoredFile], None]] = []


def when_finished(callback: Callable[[StoredFile], None]) -> None:
    """Run ``callback(stored_file)`` in each file's finishing transaction."""
    _on_finish.append(callback)


KEEP_EXPIRY = object()


def finish(
    stored_file: StoredFile,
    description: str | None = None,
    expected: Iterable[str | None] = (),
    expires_at: Any = KEEP_EXPIRY,
) -> StoredFile:
    """Check the digest against each ``expected`` one, then make the file
    visible (committed), expiring at ``expires_at`` if given. A mismatch is
    a 400; the caller discards the file."""
    sha256 = ResumableSHA256.from_state(stored_file.hash_state).hexdigest()
    for digest in expected:
        if digest is not None and digest.lower() != sha256:
            raise ApiError(400, "The file's SHA-256 does not match the one sent")
    size = stored_file.size

    @retry_on_conflict
    def make_visible() -> None:
        lock_owners(stored_file.owner_id)
        stored_file.size = size
        stored_file.sha256 = sha256
        stored_file.hash_state = None
        if description is not None:
            stored_file.description = description
        if expires_at is not KEEP_EXPIRY:
            stored_file.expires_at = expires_at
        stored_file.complete = True
        stored_file.updated_at = utcnow()
        db.session.flush()
        recount_files(stored_file.owner_id)
        for callback in _on_finish:
            callback(stored_file)

    make_visible()
    UPLOADED.inc(size)
    return stored_file


# An account's finished files, counted afresh from the listing index, in the
# statement that stores the count: a count of its own changes and of every
# transaction committed before it (the row lock on the account orders them).
RECOUNT = (
    db.update(User)
    .where(User.id == bindparam("owner_id"))
    .values(
        file_count=db.select(func.count())
        .select_from(StoredFile)
        .where(StoredFile.owner_id == User.id, StoredFile.complete.is_(True))
        .scalar_subquery()
    )
    .execution_options(synchronize_session=False)
)


EXPIRED_COUNT = (
    db.select(func.count())
    .select_from(StoredFile)
    .where(
        StoredFile.owner_id == bindparam("owner_id"),
        StoredFile.expires_at <= bindparam("now"),
        StoredFile.complete.is_(True),
    )
)


def kept_file_count(user: User) -> int:
    """How many finished files ``user`` keeps now: the stored count, less
    those that expired and wait for `files gc` (found through the expiry
    index: usually none)."""
    if not user.file_count:
        return 0
    expired = db.session.execute(
        EXPIRED_COUNT, {"owner_id": user.id, "now": utcnow()}
    ).scalar_one()
    return user.file_count - expired


def lock_owners(*owner_ids: int) -> None:
    """Lock these accounts' rows until the commit, before any of their files'
    rows: whatever changes which files an account has, or what they hold of
    its quota (quotas.claim), takes the locks in this order, so that two such
    changes wait for each other instead of deadlocking over the recount."""
    if owner_ids:
        db.session.execute(
            db.select(User.id).where(User.id.in_(owner_ids)).with_for_update()
        )


def recount_files(*owner_ids: int) -> None:
    """Store these accounts' counts of finished files (``User.file_count``).

    Run whenever a file becomes visible or goes. It reads every finished file
    of the account, so uploading and deleting pay for the count once instead
    of every listing; the caller commits.
    """
    for owner_id in owner_ids:
        db.session.execute(RECOUNT, {"owner_id": owner_id})


def finished_file_of(owner: User, file_id: int) -> StoredFile:
    """``owner``'s finished file with this id; 404 for anyone else's, an
    unfinished or expired one, or none (the same answer)."""
    if not 1 <= file_id <= MAX_INT_ID:
        raise ApiError(404, "File not found")
    stored_file = db.session.execute(
        db.select(StoredFile).where(
            StoredFile.id == file_id,
            StoredFile.owner_id == owner.id,
            StoredFile.kept(utcnow()),
        )
    ).scalar_one_or_none()
    if stored_file is None:
        raise ApiError(404, "File not found")
    return stored_file


def delete_stored_files(*where: ColumnElement[bool]) -> int:
    """Delete the files matching ``where`` with all their chunks, and recount
    their owners' finished files; the caller commits."""
    owners = list(
        db.session.execute(
            db.select(StoredFile.owner_id).where(*where).distinct()
        ).scalars()
    )
    lock_owners(*owners)
    file_ids = db.select(StoredFile.id).where(*where)
    db.session.execute(db.delete(FileChunk).where(FileChunk.file_id.in_(file_ids)))
    deleted = rowcount(db.session.execute(db.delete(StoredFile).where(*where)))
    recount_files(*owners)
    return deleted


def discard(file_id: int) -> None:
    """Remove a file that will not be finished, with every chunk it wrote."""
    UPLOAD_FAILURES.inc()
    db.session.rollback()
    try:
        delete_stored_files(StoredFile.id == file_id)
        db.session.commit()
    except Exception:
        # The database may be what failed; `files gc` removes the rest later.
        db.session.rollback()
        current_app.logger.warning("Could not remove unfinished upload %s", file_id)


# Reads the next row of each download in this process while the last one is
# sent. The threads are kept from one download to the next: starting one for
# each download was a fixed cost that a small file's download felt
# (docs/benchmarks.md). A download has one read in flight at a time, so the
# pool only bounds how many downloads read ahead at the same moment.
PREFETCH_THREADS = 32
_prefetcher = ThreadPoolExecutor(PREFETCH_THREADS, thread_name_prefix="prefetch")


class MissingChunkError(RuntimeError):
    """A download found fewer chunks than the file's size says it has."""


# Damaged stored data is the one case a 500 is the right answer: the server
# holds bytes that are not the file's, and says so rather than send them.
DAMAGED_MESSAGE = (
    "This file's stored data is damaged, so it is not sent; the server's log "
    "names the file for its administrator"
)


def damaged(file_id: int, error: Exception) -> ApiError:
    """Log that a file's stored data did not open, naming it; the 500 to answer."""
    current_app.logger.error("Stored data of file %s is damaged: %s", file_id, error)
    return ApiError(500, DAMAGED_MESSAGE)


def read_range(stored_file: StoredFile, start: int, stop: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``stop`` (exclusive) of a file, as an iterator of pieces.

    Only the chunks that hold the range are read, in one query whose rows the
    server streams (an unbuffered cursor), on a connection of its own held for
    the whole transfer: memory stays at a chunk whatever the file's size, and a
    helper thread already reads the next row while one piece is being sent.
    Everything it needs is taken now, so the iterator can be streamed after the
    view has returned.
    """
    file_id, chunk_size, engine = stored_file.id, stored_file.chunk_size, db.engine
    size = stored_file.size
    logger = current_app.logger
    storage_keys.ready()
    keys = sealing.keys()
    first, last = start // chunk_size, (stop - 1) // chunk_size
    query = (
        db.select(FileChunk.seq, FileChunk.key_id, FileChunk.data)
        .where(FileChunk.file_id == file_id, FileChunk.seq.between(first, last))
        .order_by(FileChunk.seq)
    )

    def pieces():
        if start >= stop:
            return
        with engine.connect() as connection:
            rows = connection.execution_options(yield_per=1).execute(query)
            expected = first
            pending = _prefetcher.submit(rows.fetchone)
            try:
                try:
                    while (row := pending.result()) is not None:
                        pending = _prefetcher.submit(rows.fetchone)
                        seq, key_id, data = row
                        if seq != expected:
                            raise MissingChunkError(f"chunk {expected} is missing")
                        expected += 1
                        # Opened here, not in the read-ahead thread: the
                        # cipher holds the GIL while it works, and opened
                        # there it slowed the reads it should overlap
                        # (docs/benchmarks.md, encryption at rest).
                        data = keys.open_chunk(file_id, seq, key_id, data)
                        offset = seq * chunk_size
                        if len(data) < min(chunk_size, size - offset):
                            # An older seal of this chunk put back (a copy from
                            # before an upload went on) opens, but is shorter:
                            # the bytes after it would all be misplaced.
                            raise sealing.DamagedData(
                                f"chunk {seq} holds {len(data)} bytes, fewer "
                                "than the file's size says"
                            )
                        piece = bytes(data[max(start - offset, 0) : stop - offset])
                        yield piece
                        DOWNLOADED.inc(len(piece))
                    if expected != last + 1:
                        # MariaDB Connector ends a result quietly when the server
                        # goes away in the middle of it.
                        raise MissingChunkError(
                            f"the rows stopped before chunk {expected}"
                        )
                finally:
                    # No read may still run on the connection in a prefetch
                    # thread once it is dropped or given back to the pool.
                    wait([pending])
            except GeneratorExit:
                # Stopped early (the client went away): drop the connection rather
                # than drain the rest of the streamed result from the server.
                connection.invalidate()
                raise
            except (SQLAlchemyError, MissingChunkError, sealing.DamagedData) as error:
                # The status line went out long ago (opened_first saw to the
                # first chunk): all that is left is to end the body early,
                # which raising does (the server closes the connection short
                # of the Content-Length, so no wrong byte is sent), and to say
                # why.
                logger.error(
                    "Download of file %s cut short%s: %s",
                    file_id,
                    ", its stored data is damaged"
                    if isinstance(error, sealing.DamagedData)
                    else "",
                    getattr(error, "orig", None) or error,
                )
                connection.invalidate()
                raise

    return pieces()


class FirstRead:
    """A download's pieces with the first one already read and opened (see
    ``opened_first``); closing it closes the read."""

    def __init__(self, first: bytes | None, rest: Iterator[bytes]):
        self._first = first
        self._rest = rest

    def __iter__(self) -> "FirstRead":
        return self

    def __next__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return next(self._rest)

    def close(self) -> None:
        self._first = None
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()


def opened_first(file_id: int, pieces: Iterator[bytes]) -> FirstRead:
    """``pieces`` (from read_range) with the first chunk read and opened now,
    before the answer's status line goes out: a damaged one is a 500 that
    says so (and a log line naming the file) instead of a transfer cut at
    its first byte."""
    try:
        first = next(pieces, None)
    except sealing.DamagedData as error:
        # read_range has logged it, naming the file.
        raise ApiError(500, DAMAGED_MESSAGE) from error
    return FirstRead(first, pieces)
