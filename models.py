"""The database: ``db``, the tables, and how a transaction is retried.

The shapes requests and responses take (marshmallow) are in schemas.py.
"""

import binascii
import functools
import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from flask import Flask
from flask_marshmallow import Marshmallow
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.model import Model as FlaskModel
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    event,
    or_,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import CursorResult, Dialect, Result
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeEngine

from metrics import RETRIES

# Stable constraint names, so that migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# utf8mb4 so that any filename round-trips; a binary collation so that names
# compare exactly as they do on SQLite.
MYSQL_TABLE_ARGS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


# SQLite reuses the largest rowid once its row is deleted unless the table says
# AUTOINCREMENT: a deleted user's id would go to the next user created, a deleted
# file's to the next file. (MariaDB's InnoDB keeps its counter across restarts.)
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


# Ids are INT columns: a number above 2^31-1 (or below 1) is nobody's row, and
# a lookup of one is simply "not found", without a query.
MAX_INT_ID = 2**31 - 1


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time stored as naive UTC and read back timezone-aware.

    MySQL's DATETIME and SQLite keep no offset; this keeps every value the
    application sees in UTC, with microseconds on MySQL too.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Use DATETIME(6) on MySQL, whose DATETIME drops fractions of a second."""
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        """Convert an aware datetime to naive UTC for storage."""
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        """Mark a stored naive datetime as UTC."""
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class HexLiteral:
    """Bytes that mysqlclient writes into a statement as a hexadecimal literal."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def hex_literal(value: HexLiteral, encoders: object) -> bytes:
    """``X'<hex digits>'``: mysqlclient's encoder for :class:`HexLiteral`."""
    return b"X'" + binascii.hexlify(value.data) + b"'"


def _teach_hex_literals(
    dbapi_connection: Any, connection_record: ConnectionPoolEntry
) -> None:
    """Let a mysqlclient connection encode :class:`HexLiteral` parameters."""
    dbapi_connection.encoders[HexLiteral] = hex_literal


def _sqlite_pragmas(
    dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry
) -> None:
    """Enforce foreign keys and use write-ahead logging on SQLite; a new
    database frees pages incrementally (`files gc` gives them back to the
    file system; on an existing one this changes nothing)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class MediumBlob(mysql.MEDIUMBLOB):
    """A MEDIUMBLOB whose bytes travel fastest through either MySQL driver.

    mysqlclient (``mysql://``) has no binary protocol: every parameter becomes
    SQL text. For bytes that text is an escaped string, which it escapes byte
    by byte with the connection's character set and the server parses again:
    slow. A hexadecimal literal, ``X'…'``, is twice as long but made by
    binascii and parsed by the server without a character set, and so much
    faster (docs/benchmarks.md has the figures). Only hex digits reach the
    statement, through the driver's own encoder table: the SQL is never built
    from the data. MariaDB Connector sends bytes as they are and keeps them.
    """

    def bind_processor(
        self, dialect: Dialect
    ) -> Callable[[bytes | None], HexLiteral | None] | None:
        """Wrap the bytes for mysqlclient; anything else binds them as usual."""
        if dialect.driver != "mysqldb":
            return super().bind_processor(dialect)

        def process(value: bytes | None) -> HexLiteral | None:
            return None if value is None else HexLiteral(value)

        return process


# Chunk bytes: a MEDIUMBLOB (up to 16 MiB) on MySQL, where a plain BLOB stops at 64 KiB.
ChunkBytes = LargeBinary().with_variant(MediumBlob(), "mysql", "mariadb")


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Objects stay readable after a commit: no SELECT to refresh them in the same request.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
ma = Marshmallow()

if TYPE_CHECKING:
    # The tables' base class, db.Model, is made when ``db`` is: a type checker
    # cannot take an attribute as a base class. It is Base with Flask-SQLAlchemy's
    # Model mixed in.
    class Model(FlaskModel, Base):
        """What ``db.Model`` is, for the type checker."""

else:
    Model = db.Model


def init_app(app: Flask) -> None:
    """The database for ``app``, and what each of its engine's new connections
    needs from its driver: SQLite's pragmas, mysqlclient's hexadecimal
    literals. Attached to this app's engine, not to every engine the process
    makes."""
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.driver == "mysqldb":
        event.listen(engine, "connect", _teach_hex_literals)


# MySQL/MariaDB's "Deadlock found when trying to get lock": InnoDB picked this
# transaction to undo, or a Galera cluster refused it at commit because a
# concurrent one on another node touched the same rows. Either way nothing of it
# was kept, and running it again is the documented answer.
CONFLICT_ERROR_CODES = {1213}
# A Galera node refusing a transaction while the cluster changes shape (a node
# died or joined): "Error during COMMIT" (not connected to the primary
# component, for a moment) and "WSREP has not yet prepared node for
# application use". Nothing of it was kept; once the survivors have formed
# the new primary component, a moment later, the same transaction goes through.
CLUSTER_CHANGE_ERROR_CODES = {1180, 1047}
CONFLICT_ATTEMPTS = 6


def error_code(error: StatementError) -> int | None:
    """The database's own number for the error (MySQL/MariaDB), if any."""
    orig = error.orig
    code = getattr(orig, "errno", None)  # MariaDB Connector/Python
    if code is None and orig is not None and orig.args:
        code = orig.args[0]  # mysqlclient: (code, message)
    return code


def is_conflict(error: DBAPIError) -> bool:
    """Whether the database undid a transaction for a conflict with another one."""
    return error_code(error) in CONFLICT_ERROR_CODES


def is_retryable(error: DBAPIError) -> bool:
    """Whether running the transaction again is the answer: a conflict, or a
    Galera cluster changing shape under it."""
    return error_code(error) in CONFLICT_ERROR_CODES | CLUSTER_CHANGE_ERROR_CODES


def retry_pause(attempt: int) -> None:
    """A short, random pause before attempt ``attempt + 1``: two requests that
    collided once should not collide again in step, and a cluster that is
    changing shape gets up to a second or two to settle (6 attempts)."""
    RETRIES.inc()
    time.sleep(random.uniform(0.5, 1) * 0.02 * 2**attempt)


P = ParamSpec("P")
R = TypeVar("R")


def retry_on_conflict(work: Callable[P, R]) -> Callable[P, R]:
    """Run ``work`` and commit, running both again when the database undid the
    transaction for a conflict or a cluster change (up to CONFLICT_ATTEMPTS in
    all).

    ``work`` must read what it decides on inside the transaction, so that a
    repeat decides afresh; anything else it raises rolls back and propagates.
    """

    @functools.wraps(work)
    def in_transaction(*args: P.args, **kwargs: P.kwargs) -> R:
        attempt = 1
        while True:
            try:
                result = work(*args, **kwargs)
                db.session.commit()
                return result
            except DBAPIError as error:
                db.session.rollback()
                if attempt >= CONFLICT_ATTEMPTS or not is_retryable(error):
                    raise
            retry_pause(attempt)
            attempt += 1

    return in_transaction


def change_account(user: "User", work: Callable[["User"], R]) -> R:
    """Run ``work`` on ``user`` read afresh in a transaction of its own, and
    commit, retried as ``retry_on_conflict`` says: a change to an account's
    sign-in settings decides on what the database holds, not on the row the
    request read when it started."""

    @retry_on_conflict
    def in_transaction() -> R:
        db.session.refresh(user)
        return work(user)

    return in_transaction()


def rowcount(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE (without RETURNING) matched.

    The session answers such a statement with a CursorResult, which counts
    them, though ``Session.execute`` is typed to return any Result.
    """
    return cast(CursorResult[Any], result).rowcount


def new_token_version() -> str:
    """A random token version, unguessable and different for every account."""
    return secrets.token_urlsafe(16)


class User(Model):
    """Someone who can sign in; owns files."""

    __tablename__ = "user"
    __table_args__ = (
        # One account per person at an identity provider (oidc.py).
        UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_user_oidc"),
        {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    # None: the account signs in through its identity provider only.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # "user" or "admin" (ROLES).
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Carried in every token as `ver` and checked on every request: random per
    # account, so a token opens only the account it was issued for (even if its
    # id is ever given to someone else, after a restore say), and replaced to
    # revoke all the account's tokens at once (sign out everywhere, a new password).
    token_version: Mapped[str] = mapped_column(String(32), default=new_token_version)
    # Bytes this account may keep; None: the STORAGE_QUOTA_BYTES default (quotas.py).
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # How long this account's new files live unless an upload says (seconds;
    # None: kept until deleted) (lifetimes.py).
    file_lifetime_seconds: Mapped[int | None] = mapped_column(Integer)
    # How many finished files the account has: the listing's total, read with
    # the account on every request instead of counted over all its files
    # (storage.recount_files keeps it; docs/benchmarks.md).
    file_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Counts the account's quota reservations. Each one writes it first, so
    # that two at once are ordered: by the row lock on one server, by
    # certification (one of them retried) through two Galera nodes (quotas.py).
    reservations: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Where the account is told of its events by e-mail (notifications.py):
    # nothing is sent there but the confirmation until its link is opened.
    email: Mapped[str | None] = mapped_column(String(254))
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The event types told by e-mail, space-separated.
    email_events: Mapped[str] = mapped_column(
        String(255), default="", server_default=""
    )
    # The person at an OpenID provider this account signs in as (its ``iss``
    # and ``sub``, never its e-mail), the provider's refresh token (sealed)
    # and when the provider last said the person may still sign in (oidc.py).
    oidc_issuer: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    oidc_refresh_token: Mapped[str | None] = mapped_column(Text)
    oidc_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A second factor (two_factor.py): the TOTP secret, sealed; when it was
    # confirmed (None: being set up, or off); the last time step a code was
    # accepted for, so that no code works twice.
    totp_secret: Mapped[str | None] = mapped_column(String(512))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0"
    )
    # Set by an administrator: nothing of the account's opens while it is set
    # (credentials.owner_still_trusts, session_tokens.user_for), on every
    # instance at once, and it cannot sign in; cleared, all works again.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last successful sign-in (a password, a provider), for the admin area.
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    files: Mapped[list["StoredFile"]] = relationship(
        back_populates="owner", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"


ROLES = ("user", "admin")
ADMIN = "admin"


class Invitation(Model):
    """A single-use link that lets a person set their account's password: a
    new account an administrator made, or a password reset
    (invitations.py). Kept as the SHA-256 of its secret."""

    __tablename__ = "invitation"
    __table_args__ = MYSQL_TABLE_ARGS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    # "invite" (a new account) or "reset" (a new password).
    purpose: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Setting(Model):
    """One server-wide policy an administrator set (policies.py), as JSON:
    read from the database where it applies, so every instance follows a
    change at once."""

    __tablename__ = "setting"
    __table_args__ = MYSQL_TABLE_ARGS

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Model):
    """One security-relevant event (audit.py): append-only, and chained: each
    row keeps the hash of the one before it and its own, so that an edited or
    a deleted row breaks the chain (``flask audit verify``)."""

    __tablename__ = "audit_event"
    __table_args__ = MYSQL_TABLE_ARGS

    # The row's place in the chain: one more than the row before it, unique,
    # so that two writers at once cannot both follow the same row.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    event: Mapped[str] = mapped_column(String(40), index=True)
    # Who did it: an account's id and name as they were (kept after the
    # account is deleted), or none (a visitor, the command line).
    actor_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor: Mapped[str] = mapped_column(String(80), default="")
    # What it was done to ("user 4 bob", "link 12"...), and how it ended.
    target: Mapped[str] = mapped_column(String(255), default="")
    outcome: Mapped[str] = mapped_column(String(255), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class RecoveryCode(Model):
    """A single-use code that stands in for a second factor's code
    (two_factor.py): its SHA-256, and when it was used."""

    __tablename__ = "recovery_code"
    __table_args__ = {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StoredFile(Model):
    """One uploaded file's metadata; its bytes live in FileChunk rows.

    A file is visible only once ``complete`` is true: an upload in progress, or
    one that failed before it could clean up, stays hidden until ``files gc``
    removes it.
    """

    __tablename__ = "stored_file"
    __table_args__ = (
        # The listing: one owner's finished files, newest first; with their
        # expiry, so that the page's ids still come from the index alone.
        Index(
            "ix_stored_file_listing",
            "owner_id",
            "complete",
            "created_at",
            "expires_at",
        ),
        # An account's expired files (not counted), and `files gc`'s.
        Index("ix_stored_file_expiry", "owner_id", "expires_at"),
        {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(200), default="")
    content_type: Mapped[str] = mapped_column(
        String(255), default="application/octet-stream"
    )
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # Bytes per chunk row when this file was stored; ranges are found from it.
    chunk_size: Mapped[int] = mapped_column(Integer, default=1024 * 1024)
    complete: Mapped[bool] = mapped_column(default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped as chunks arrive, so that gc can tell a stalled upload from a slow one.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # While unfinished: the SHA-256 of the bytes stored so far, saved (digests.py)
    # so that the next append, in any request or process, goes on from there.
    hash_state: Mapped[bytes | None] = mapped_column(LargeBinary())
    # While unfinished: the bytes held against the owner's quota for it (the
    # length it announced), so that parallel uploads cannot overshoot together.
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    # When it stops being listed, downloaded or counted (lifetimes.py), and
    # `files gc` removes it; None: kept until deleted.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The upload request a guest sent it through; None for the owner's own.
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("upload_request.id", ondelete="SET NULL"), index=True
    )

    owner: Mapped[User] = relationship(back_populates="files")

    def __repr__(self) -> str:
        return f"<StoredFile {self.id} {self.filename!r}>"

    @classmethod
    def kept(cls, now: Any) -> Any:
        """Finished and not expired at ``now`` (a time or a bound parameter):
        what is listed, downloaded, shared and counted."""
        return and_(
            cls.complete.is_(True), or_(cls.expires_at.is_(None), cls.expires_at > now)
        )

    def expired(self) -> bool:
        """Whether this file's lifetime is over."""
        return self.expires_at is not None and self.expires_at <= utcnow()


class ResumableUpload(Model):
    """A tus upload: the URL it is reached at, and what the protocol keeps.

    Its bytes are an unfinished StoredFile's, stored through storage.py like
    any other upload's. The URL's key is a secret that opens this one upload
    (uploads.py); only its SHA-256 is kept.
    """

    __tablename__ = "resumable_upload"
    __table_args__ = {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    file_id: Mapped[int] = mapped_column(
        ForeignKey("stored_file.id", ondelete="CASCADE"), unique=True
    )
    # The announced length (Upload-Length); None while deferred.
    length: Mapped[int | None] = mapped_column(BigInteger)
    # Upload-Metadata as the client sent it, given back by HEAD.
    upload_metadata: Mapped[str] = mapped_column(String(4096), default="")
    # The owner's token version when it began: signing out everywhere, or a new
    # password, ends the upload's key like every token.
    owner_version: Mapped[str] = mapped_column(String(32))
    # Moved on by every piece received: an upload in use does not expire.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    stored_file: Mapped[StoredFile] = relationship()


class Share(Model):
    """A link that opens one file, or several, to anyone who has it, no
    account needed.

    The link's token is ``public_id`` signed with the app's key (shares.py):
    the public id alone, all a copy of the database holds, opens nothing.
    A link to one file names it in ``file_id`` and goes with it; a link to
    several has no ``file_id`` and lists them in ``share_file``, from which a
    deleted file drops out.
    """

    __tablename__ = "share"
    __table_args__ = {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    file_id: Mapped[int | None] = mapped_column(
        ForeignKey("stored_file.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # scrypt, like account passwords; None: no password.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    max_downloads: Mapped[int | None] = mapped_column(Integer)
    # Whole-file downloads counted so far (shares.py says what counts).
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    last_download_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The owner's token version when it was made: signing out everywhere, or a
    # new password, ends the link like every token.
    owner_version: Mapped[str] = mapped_column(String(32))
    # Its owner was told it expired unused (notifications.py), once.
    expiry_noticed: Mapped[bool] = mapped_column(default=False)

    stored_file: Mapped[StoredFile | None] = relationship()


class ShareFile(Model):
    """One of the files of a link to several, in the order they were picked."""

    __tablename__ = "share_file"
    __table_args__ = MYSQL_TABLE_ARGS

    share_id: Mapped[int] = mapped_column(
        ForeignKey("share.id", ondelete="CASCADE"), primary_key=True
    )
    # Its place in the link, from 1: the file's address under the link
    # (/s/<link>/files/<position>), which deleting another file leaves alone.
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(
        ForeignKey("stored_file.id", ondelete="CASCADE"), index=True
    )


class UploadRequest(Model):
    """A link that lets anyone who has it send files into its owner's
    account, no account needed ("file drop"). Its token is ``public_id``
    signed with the app's key (request_links.py), like a share link's."""

    __tablename__ = "upload_request"
    __table_args__ = {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    # What the guest is told.
    title: Mapped[str] = mapped_column(String(120))
    note: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # scrypt, like account passwords; None: no password.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Caps on what may arrive: files (None: any number) and bytes in all.
    max_files: Mapped[int | None] = mapped_column(Integer)
    max_bytes: Mapped[int] = mapped_column(BigInteger)
    # The kinds of file it takes: ".pdf, image/*"; None: any.
    allowed_types: Mapped[str | None] = mapped_column(String(255))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The owner's token version when it was made: signing out everywhere, or a
    # new password, ends it like every token.
    owner_version: Mapped[str] = mapped_column(String(32))
    # Its owner was told it expired unused, or that it is full
    # (notifications.py), once each.
    expiry_noticed: Mapped[bool] = mapped_column(default=False)
    filled_noticed: Mapped[bool] = mapped_column(default=False)


class Webhook(Model):
    """An address that hears of its owner's events (notifications.py): a
    POST signed with ``secret`` per Standard Webhooks for each event it
    names."""

    __tablename__ = "webhook"
    __table_args__ = {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    # "whsec_" and the base64 of 32 random bytes: kept, since every delivery
    # is signed with it; shown to its owner once.
    # Sealed under the storage keys (sealing.py) when encryption is on.
    secret: Mapped[str] = mapped_column(String(255))
    secret_shown: Mapped[bool] = mapped_column(default=False)
    # The event types it hears, space-separated.
    events: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delivery(Model):
    """One event for one webhook or one e-mail address: written in the
    transaction of what it tells, sent by whichever instance leases it
    first, tried again on a schedule until it is accepted (a 2xx, or the
    mail server's OK) or about a day has passed."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The webhook it goes to; or, for an e-mail, its account and address.
    webhook_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    email_to: Mapped[str | None] = mapped_column(String(254))
    # The webhook-id header: the same on every attempt, so that a receiver
    # drops repeats.
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    event_type: Mapped[str] = mapped_column(String(40))
    # What gathers events into one message (an upload request's visit).
    batch_key: Mapped[str | None] = mapped_column(String(64), index=True)
    # The JSON body, exactly as it is signed and sent.
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending, delivered or failed (no attempt left).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Until when the instance sending it holds it.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))


class AccessEvent(Model):
    """Who fetched what through a share link, or sent what through an upload
    request: one row a request that moved bytes (access_log.py writes them,
    ``files gc`` forgets them after ACCESS_LOG_DAYS)."""

    __tablename__ = "access_event"
    __table_args__ = {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    share_id: Mapped[int | None] = mapped_column(
        ForeignKey("share.id", ondelete="CASCADE"), index=True
    )
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("upload_request.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The client's address (behind the configured proxies) and user agent.
    address: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    # download, resume, preview, upload.
    action: Mapped[str] = mapped_column(String(16))
    # The file's name.
    what: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Whether all it meant to move arrived (a whole download, a whole piece).
    completed: Mapped[bool] = mapped_column(default=False)


class ShareDownload(Model):
    """A counted download of a share link: the claim its client resumes with
    names it (shares.py). Kept for SHARE_RESUME_SECONDS, then forgotten by
    ``files gc``; the count itself stays on the share."""

    __tablename__ = "share_download"
    __table_args__ = {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    share_id: Mapped[int] = mapped_column(
        ForeignKey("share.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AccessToken(Model):
    """A personal access token: an opaque, scoped credential for scripts.

    Only the SHA-256 of the token is kept (authentication.py checks it); the
    token itself is shown once, when it is made (access_tokens.py).
    """

    __tablename__ = "access_token"
    __table_args__ = {**MYSQL_TABLE_ARGS, **NEVER_REUSE_IDS}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The token's first characters, to recognise it in a list.
    prefix: Mapped[str] = mapped_column(String(16))
    # Space-separated, e.g. "files:read files:write".
    scopes: Mapped[str] = mapped_column(String(255))
    # The owner's token version when it was made (see Share.owner_version).
    owner_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None: never expires (only when PAT_ALLOW_NO_EXPIRY is set).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Moved on at most once a minute (authentication.py).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    @property
    def scope_list(self) -> list[str]:
        """The scopes, as a list."""
        return self.scopes.split()


class RevokedToken(Model):
    """A token id (``jti``) or a refresh family (``family:<id>``) no longer honoured.

    Shared by every app instance through the database; a row is kept only until
    the token it names would have expired anyway.
    """

    __tablename__ = "revoked_token"
    __table_args__ = MYSQL_TABLE_ARGS

    jti: Mapped[str] = mapped_column(String(80), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class FileChunk(Model):
    """A slice of a file's bytes, at most CHUNK_SIZE long, in order by ``seq``."""

    __tablename__ = "file_chunk"
    __table_args__ = MYSQL_TABLE_ARGS

    file_id: Mapped[int] = mapped_column(
        ForeignKey("stored_file.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Sealed (sealing.py): the nonce, the ciphertext and the tag, under the
    # storage key ``key_id``; in clear when that is None.
    data: Mapped[bytes] = mapped_column(ChunkBytes)
    key_id: Mapped[str | None] = mapped_column(String(32))
    # Bumped whenever the row is written again (an append rebuilding a file's
    # last chunk), so that `storage rekey` replaces only the bytes it read.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class StorageKey(Model):
    """A storage key the database's data may be sealed under
    (storage_keys.py): its id and check value, so that a server missing it,
    or holding another key under its id, refuses to start.
    ``made_current_at``: when an instance first sealed under it (None: added
    ahead of being made current). ``retired_at``: `storage retire` found
    nothing left under it, and it may leave the configuration."""

    __tablename__ = "storage_key"
    __table_args__ = MYSQL_TABLE_ARGS

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    check_value: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    made_current_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
