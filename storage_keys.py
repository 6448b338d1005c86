"""The storage keys the database's data is sealed under (sealing.py): checked
against the database when the app starts, and rolled by `flask storage rekey`.

The ``storage_key`` table holds each key's id and check value, never the key.
A server that lacks a key the table lists, or holds another key under a
listed id, refuses to start with a message that says which; keys it holds that
the table lacks are added. The check reads that small table only, never the
chunks. ``rekey`` re-seals every chunk under the current key in small
transactions while the app serves, then marks the keys nothing is sealed
under any more as retired: they may leave STORAGE_KEYS.
"""

import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import inspect, or_
from sqlalchemy.exc import DBAPIError, IntegrityError

import sealing
from config import ConfigError
from models import (
    CONFLICT_ATTEMPTS,
    FileChunk,
    StorageKey,
    db,
    is_retryable,
    retry_pause,
    rowcount,
    utcnow,
)

# Chunks re-sealed per transaction: a few MiB, so that a transaction stays
# short on Galera (a write set is certified whole) and a crash loses little.
CHUNKS_PER_TRANSACTION = 8
# How often rekey says how far it has come.
REPORT_SECONDS = 2.0
_CHECKED = "lockbox.storage_keys_checked"


def check_at_start() -> None:
    """Check the configured keys against the database (ConfigError when they
    do not match); when the database cannot be asked yet (not reachable, not
    migrated), the first sealed read or write asks again."""
    try:
        if not inspect(db.engine).has_table(StorageKey.__tablename__):
            return
        ready()
    except DBAPIError as error:
        db.session.rollback()
        current_app.logger.warning(
            "Storage keys not checked at start (the database did not answer: "
            "%s); they are checked before the first file is read or written",
            getattr(error, "orig", None) or error,
        )


def ready() -> None:
    """Make sure, once per process, that the configured keys match the ones
    the database records (and record the new ones): ConfigError if not."""
    if current_app.extensions.get(_CHECKED):
        return
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            _check_and_record()
            break
        except (IntegrityError, DBAPIError) as error:
            # Another instance recorded the same new key meanwhile, or a
            # Galera conflict: look again.
            db.session.rollback()
            if attempt == CONFLICT_ATTEMPTS or not (
                isinstance(error, IntegrityError) or is_retryable(error)
            ):
                raise
            retry_pause(attempt)
    current_app.extensions[_CHECKED] = True


def _check_and_record() -> None:
    configured: dict[str, bytes] = current_app.config.get("STORAGE_KEYS") or {}
    current = sealing.current_key_id()
    recorded = {
        row.id: row for row in db.session.execute(db.select(StorageKey)).scalars()
    }
    wrong = sorted(
        key_id
        for key_id, row in recorded.items()
        if key_id in configured
        and not hmac.compare_digest(
            row.check_value, sealing.check_value(configured[key_id])
        )
    )
    if wrong:
        db.session.rollback()
        raise ConfigError(
            f"STORAGE_KEYS holds another key than the one the database's data "
            f"is sealed under, for {_named(wrong)}: restore the right key (the "
            "database keeps a check value of each key, never the key)"
        )
    missing = sorted(
        key_id
        for key_id, row in recorded.items()
        if row.retired_at is None and key_id not in configured
    )
    if missing:
        db.session.rollback()
        raise ConfigError(
            f"The database holds data sealed under {_named(missing)}, which "
            "STORAGE_KEYS lacks: add every key in use to every instance "
            "(docs/deploy.md, rolling a storage key)"
        )
    if current is not None and current in recorded and recorded[current].retired_at:
        db.session.rollback()
        raise ConfigError(
            f"Storage key {current!r} was retired by `flask storage rekey`: "
            "make a newer key current"
        )
    for key_id, key in configured.items():
        if key_id not in recorded:
            recorded[key_id] = StorageKey(
                id=key_id, check_value=sealing.check_value(key)
            )
            db.session.add(recorded[key_id])
    if current is not None and recorded[current].made_current_at is None:
        recorded[current].made_current_at = utcnow()
    db.session.commit()


def _named(key_ids: Iterable[str]) -> str:
    names = ", ".join(repr(key_id) for key_id in key_ids)
    return f"the key {names}" if "," not in names else f"the keys {names}"


@dataclass
class Rekeyed:
    """What a run of ``rekey_chunks`` did."""

    resealed: int = 0
    # Written again while being re-sealed (an upload rebuilding its last
    # chunk): left for the writer's own seal, or the next run.
    changed: int = 0
    # Chunks that did not open: left as they are, named in the log.
    damaged: list[tuple[int, int]] = field(default_factory=list)


def _stale():
    """Chunks not sealed under the current key (or not sealed at all)."""
    current = sealing.current_key_id()
    return or_(FileChunk.key_id.is_(None), FileChunk.key_id != current)


def chunks_to_reseal() -> int:
    """How many chunks are not sealed under the current key (a full scan of
    the chunk table's rows, not of their bytes)."""
    return db.session.execute(
        db.select(db.func.count()).select_from(FileChunk).where(_stale())
    ).scalar_one()


def rekey_chunks(report: Callable[[int], None]) -> Rekeyed:
    """Re-seal every chunk not under the current key, in primary key order,
    CHUNKS_PER_TRANSACTION per transaction; ``report(done)`` every few seconds.

    Each chunk is replaced only if it is still the row that was read (same
    key id and version): an upload that rewrote it meanwhile sealed it
    itself. Interrupted, a run loses at most one transaction's work, and the
    next run goes on with what is left.
    """
    if sealing.current_key_id() is None:
        raise ConfigError("STORAGE_KEYS is not set: there is no key to seal under")
    ready()
    done = Rekeyed()
    after = (0, -1)
    last_report = time.monotonic()
    while True:
        after_file, after_seq = after
        batch = db.session.execute(
            db.select(FileChunk.file_id, FileChunk.seq)
            .where(
                _stale(),
                or_(
                    FileChunk.file_id > after_file,
                    (FileChunk.file_id == after_file) & (FileChunk.seq > after_seq),
                ),
            )
            .order_by(FileChunk.file_id, FileChunk.seq)
            .limit(CHUNKS_PER_TRANSACTION)
        ).all()
        db.session.rollback()
        if not batch:
            return done
        _reseal_batch([(row.file_id, row.seq) for row in batch], done)
        after = (batch[-1].file_id, batch[-1].seq)
        if time.monotonic() - last_report >= REPORT_SECONDS:
            report(done.resealed)
            last_report = time.monotonic()


def _reseal_batch(keys: list[tuple[int, int]], done: Rekeyed) -> None:
    """Re-seal these chunks in one transaction, retried on a conflict."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        resealed, changed, damaged = 0, 0, []
        try:
            for file_id, seq in keys:
                outcome = _reseal_one(file_id, seq)
                if outcome == "damaged":
                    damaged.append((file_id, seq))
                elif outcome == "changed":
                    changed += 1
                elif outcome == "resealed":
                    resealed += 1
            db.session.commit()
        except DBAPIError as error:
            db.session.rollback()
            if attempt == CONFLICT_ATTEMPTS or not is_retryable(error):
                raise
            retry_pause(attempt)
            continue
        done.resealed += resealed
        done.changed += changed
        done.damaged.extend(damaged)
        return


def _reseal_one(file_id: int, seq: int) -> str:
    """Re-seal one chunk under the current key: resealed, changed (written
    again since it was read), current (already is), or damaged."""
    row = db.session.execute(
        db.select(FileChunk.key_id, FileChunk.version, FileChunk.data).where(
            FileChunk.file_id == file_id, FileChunk.seq == seq
        )
    ).one_or_none()
    if row is None:
        return "changed"  # the file was deleted meanwhile
    keys = sealing.keys()
    if row.key_id == keys.current:
        return "current"
    try:
        plain = keys.open_chunk(file_id, seq, row.key_id, row.data)
    except sealing.DamagedData as error:
        current_app.logger.error(
            "Stored data of file %s is damaged, left as it is: %s", file_id, error
        )
        return "damaged"
    key_id, sealed = keys.seal_chunk(file_id, seq, plain)
    same_key = (
        FileChunk.key_id.is_(None)
        if row.key_id is None
        else FileChunk.key_id == row.key_id
    )
    updated = rowcount(
        db.session.execute(
            db.update(FileChunk)
            .where(
                FileChunk.file_id == file_id,
                FileChunk.seq == seq,
                FileChunk.version == row.version,
                same_key,
            )
            .values(data=sealed, key_id=key_id, version=FileChunk.version + 1)
            .execution_options(synchronize_session=False)
        )
    )
    return "resealed" if updated == 1 else "changed"


def keys_in_use(secret_columns: Iterable) -> set[str | None]:
    """The key ids something is sealed under: chunks (a scan of the chunk
    table's rows) and the kept secrets in ``secret_columns``."""
    used: set[str | None] = set(
        db.session.execute(db.select(FileChunk.key_id).distinct()).scalars()
    )
    for column in secret_columns:
        for value in db.session.execute(
            db.select(column).where(column.is_not(None))
        ).scalars():
            used.add(sealing.sealed_key_id(value))
    return used


def unused_keys(secret_columns: Iterable) -> list[str]:
    """The keys that were current once and seal nothing any more: those a
    rekey emptied (a key added ahead of being made current is not one)."""
    used = keys_in_use(secret_columns)
    current = sealing.current_key_id()
    rows = db.session.execute(
        db.select(StorageKey.id).where(
            StorageKey.retired_at.is_(None), StorageKey.made_current_at.is_not(None)
        )
    ).scalars()
    unused = sorted(
        key_id for key_id in rows if key_id != current and key_id not in used
    )
    db.session.rollback()
    return unused


def retire(key_id: str, secret_columns: Iterable) -> None:
    """Mark a key retired: it may then leave STORAGE_KEYS, and no instance
    may make it current again. Refused (ConfigError) for the current key, one
    that is not recorded, and one that still seals something."""
    row = db.session.get(StorageKey, key_id)
    if row is None or row.retired_at is not None:
        db.session.rollback()
        raise ConfigError(f"No key {key_id!r} in use is recorded in the database")
    if key_id == sealing.current_key_id():
        db.session.rollback()
        raise ConfigError(f"Key {key_id!r} is the current key: make another current")
    if key_id in keys_in_use(secret_columns):
        db.session.rollback()
        raise ConfigError(
            f"Data is still sealed under key {key_id!r}: run `flask storage "
            "rekey` first (on an instance where another key is current)"
        )
    row.retired_at = utcnow()
    db.session.commit()


def reseal_secrets(
    model: type, column: str, owner: str, reseal: Callable[[int, str], str | None]
) -> int:
    """Re-seal the kept secrets in ``model.column`` under the current key, a
    row per transaction, each replaced only if it is still the value read;
    ``reseal(owner id, kept)`` gives the new value (None: leave it). How many
    were re-sealed."""
    id_column = getattr(model, "id")  # noqa: B009 (any model with an id)
    kept_column, owner_column = getattr(model, column), getattr(model, owner)
    rows = db.session.execute(
        db.select(id_column, owner_column, kept_column).where(kept_column.is_not(None))
    ).all()
    db.session.rollback()
    resealed = 0
    for row_id, owner_id, kept in rows:
        new = reseal(owner_id, kept)
        if new is None:
            continue
        resealed += rowcount(
            db.session.execute(
                db.update(model)
                .where(id_column == row_id, kept_column == kept)
                .values({column: new})
                .execution_options(synchronize_session=False)
            )
        )
        db.session.commit()
    return resealed
