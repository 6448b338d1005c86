"""The one place file bytes move into and out of chunk rows."""

import hashlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from models import FileChunk, StoredFile, db, utcnow

# Commit every few chunks while they arrive fast (short transactions, yet not an
# fsync per chunk), and whenever the storer has to wait for the next one.
CHUNKS_PER_COMMIT = 8


class ChunkWriter:
    """Streams one file's bytes into FileChunk rows of the file's ``chunk_size``.

    The request thread hashes the bytes and cuts them into chunks; a storing
    thread, on a connection of its own, inserts them. The two overlap, so
    parsing the request and the database's work proceed side by side; a queue of
    two chunks between them keeps memory at a few chunks whatever the file's
    size. Chunks are committed every few, and before the storer waits for the
    client: no transaction stays open while a slow or stalled client keeps the
    next chunk coming (on SQLite an open one would hold the database's only
    write lock, and every other writer would wait for it). The file stays
    invisible (``complete`` false) until the caller commits after ``finish``.
    """

    def __init__(self, stored_file: StoredFile):
        self.stored_file = stored_file
        self.file_id = stored_file.id
        self.chunk_size = stored_file.chunk_size
        self.size = 0
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._digest = hashlib.sha256()
        self._error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._engine = db.engine
        self._thread = threading.Thread(target=self._store_chunks, daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Add bytes to the file, handing every chunk that fills to the storer."""
        self.size += len(data)
        self._digest.update(data)
        self._pieces.append(data)
        self._buffered += len(data)
        while self._buffered >= self.chunk_size:
            self._hand_over(self._take(self.chunk_size))

    def _take(self, length: int) -> bytes:
        """The next ``length`` buffered bytes, joined with one copy."""
        joined = b"".join(self._pieces)
        chunk, rest = joined[:length], joined[length:]
        self._pieces = [rest] if rest else []
        self._buffered = len(rest)
        return chunk

    def _hand_over(self, chunk: bytes | None) -> None:
        """Queue a chunk (None: no more), or raise what stopped the storer."""
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def _store_chunks(self) -> None:
        """The storing thread: insert chunks in order until None."""
        insert = db.insert(FileChunk)
        touch = db.update(StoredFile).where(StoredFile.id == self.file_id)
        try:
            with self._engine.connect() as connection:
                try:
                    seq = uncommitted = 0
                    while True:
                        try:
                            chunk = self._queue.get_nowait()
                        except queue.Empty:
                            if uncommitted:
                                self._commit(connection, touch)
                                uncommitted = 0
                            chunk = self._queue.get()  # waits on the client
                        if chunk is None:
                            break
                        self._insert_chunk(connection, insert, seq, chunk)
                        seq += 1
                        uncommitted += 1
                        if uncommitted == CHUNKS_PER_COMMIT:
                            self._commit(connection, touch)
                            uncommitted = 0
                    connection.commit()
                except BaseException:
                    # Drop the connection rather than roll back: on a server that
                    # has gone away the rollback fails too, and its error would
                    # replace this one. (read_chunks does the same.)
                    connection.invalidate()
                    raise
        except BaseException as error:
            self._error = error
            # Keep taking chunks so the request thread never blocks on a full queue.
            while self._queue.get() is not None:
                pass

    @staticmethod
    def _commit(connection, touch) -> None:
        """Commit the chunks so far, with the progress that lets `files gc` tell
        a slow upload from a stalled one."""
        connection.execute(touch.values(updated_at=utcnow()))
        connection.commit()

    def _insert_chunk(self, connection, insert, seq: int, chunk: bytes) -> None:
        """Insert one chunk row."""
        connection.execute(insert, {"file_id": self.file_id, "seq": seq, "data": chunk})

    def finish(self) -> None:
        """Store the rest and record size and digest on the file (not committed)."""
        if self._buffered:
            self._hand_over(self._take(self._buffered))
        self.close()
        if self._error is not None:
            raise self._error
        self.stored_file.size = self.size
        self.stored_file.sha256 = self._digest.hexdigest()

    def close(self) -> None:
        """Stop the storing thread and wait for it; safe to call more than once."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def delete_stored_files(*where) -> int:
    """Delete the files matching ``where`` with all their chunks; the caller commits."""
    file_ids = db.select(StoredFile.id).where(*where)
    db.session.execute(db.delete(FileChunk).where(FileChunk.file_id.in_(file_ids)))
    return db.session.execute(db.delete(StoredFile).where(*where)).rowcount


def discard_upload(file_id: int) -> None:
    """Remove a file that did not finish uploading, with every chunk it wrote."""
    db.session.rollback()
    try:
        delete_stored_files(StoredFile.id == file_id)
        db.session.commit()
    except Exception:
        # The database may be what failed; `files gc` removes the rest later.
        db.session.rollback()
        current_app.logger.warning("Could not remove unfinished upload %s", file_id)


class MissingChunkError(RuntimeError):
    """A download found fewer chunks than the file's size says it has."""


def read_chunks(stored_file: StoredFile, start: int, stop: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``stop`` (exclusive) of a file, as an iterator of pieces.

    Only the chunks that hold the range are read, in one query whose rows the
    server streams (an unbuffered cursor), on a connection of its own held for
    the whole transfer: memory stays at a chunk whatever the file's size, and a
    helper thread already reads the next row while one piece is being sent.
    Everything it needs is taken now, so the iterator can be streamed after the
    view has returned.
    """
    file_id, chunk_size, engine = stored_file.id, stored_file.chunk_size, db.engine
    logger = current_app.logger
    first, last = start // chunk_size, (stop - 1) // chunk_size
    query = (
        db.select(FileChunk.seq, FileChunk.data)
        .where(FileChunk.file_id == file_id, FileChunk.seq.between(first, last))
        .order_by(FileChunk.seq)
    )

    def pieces():
        if start >= stop:
            return
        with engine.connect() as connection, ThreadPoolExecutor(1) as prefetcher:
            rows = connection.execution_options(yield_per=1).execute(query)
            expected = first
            pending = prefetcher.submit(rows.fetchone)
            try:
                while (row := pending.result()) is not None:
                    pending = prefetcher.submit(rows.fetchone)
                    seq, data = row
                    if seq != expected:
                        raise MissingChunkError(f"chunk {expected} is missing")
                    expected += 1
                    offset = seq * chunk_size
                    yield bytes(data[max(start - offset, 0) : stop - offset])
                if expected != last + 1:
                    # MariaDB Connector ends a result quietly when the server
                    # goes away in the middle of it.
                    raise MissingChunkError(f"the rows stopped before chunk {expected}")
            except GeneratorExit:
                # Stopped early (the client went away): drop the connection rather
                # than drain the rest of the streamed result from the server.
                wait([pending])
                connection.invalidate()
                raise
            except (SQLAlchemyError, MissingChunkError) as error:
                # The status line went out long ago: all that is left is to end
                # the body early, which raising does (the server closes the
                # connection short of the Content-Length), and to say why.
                logger.error(
                    "Download of file %s cut short: %s",
                    file_id,
                    getattr(error, "orig", None) or error,
                )
                connection.invalidate()
                raise

    return pieces()
