"""The audit log: an append-only, chained record of security-relevant events.

Each event (AUDIT_EVENTS) is one ``audit_event`` row: who did it (the
caller's account, as it was named then), to what, how it ended, from which
address and user agent, when, and the request's id. Nothing secret goes in:
no password, token, link or key, only names and row ids.

Rows are chained: each keeps the hash of the row before it (``prev_hash``)
and its own (``row_hash``, the SHA-256 of the previous hash and its fields),
so that editing a row, or deleting one in the middle, breaks the chain that
``flask audit verify`` walks. Pruning (``flask audit prune``, AUDIT_DAYS)
deletes from the oldest end and keeps the hash of the last row it deleted
(the ``audit.anchor`` setting), so the chain still verifies from there, and
a row deleted at the old end is noticed too.

A row is written in a transaction of its own, on a connection of its own,
once what it records has been committed (or refused): an audit row never
rolls back with, nor holds up, the change it tells of. Two writers at once
cannot both follow the same row: ``seq`` is the primary key, and the one
that loses (a duplicate key here, a certification failure on Galera) reads
the new last row and tries again.
"""

import hashlib
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from flask import g, has_request_context, request
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from models import (
    AuditEvent,
    Setting,
    User,
    db,
    error_code,
    is_retryable,
    utcnow,
)

logger = logging.getLogger(__name__)

# Writers racing for the chain's next place (SQLite's, or two Galera
# nodes'): each loss costs one INSERT, so many tries are cheap.
WRITE_ATTEMPTS = 50
# The hash before the first row.
GENESIS = "0" * 64
# The setting that keeps where pruning stopped: {"seq": n, "hash": h} of the
# last row it deleted.
ANCHOR = "audit.anchor"
FIELDS = (
    "seq",
    "at",
    "event",
    "actor_id",
    "actor",
    "target",
    "outcome",
    "address",
    "user_agent",
    "request_id",
)
LIMITS = {
    "actor": 80,
    "target": 255,
    "outcome": 255,
    "address": 64,
    "user_agent": 255,
    "request_id": 64,
}

# The events, each with what it means (docs/security.md lists them too).
AUDIT_EVENTS = {
    "sign_in": "signed in (outcome: how)",
    "sign_in.failed": "a sign-in was refused (outcome: why)",
    "sign_out": "signed out",
    "sign_out.everywhere": "every session and token of the account ended",
    "password.changed": "the account's password changed",
    "two_factor.enabled": "a second factor was turned on",
    "two_factor.disabled": "the second factor was turned off or reset",
    "sso.linked": "the account was linked to a person at the identity provider",
    "sso.unlinked": "the account's link to the identity provider was removed",
    "token.created": "a personal access token was made",
    "token.revoked": "a personal access token was revoked",
    "link.created": "a share link was made",
    "link.revoked": "a share link was revoked",
    "link.expired": "a share link expired",
    "request.created": "an upload request was made",
    "request.closed": "an upload request was closed",
    "request.expired": "an upload request expired",
    "request.deleted": "an upload request was deleted",
    "webhook.created": "a webhook was added",
    "webhook.changed": "a webhook was changed, enabled or disabled",
    "webhook.deleted": "a webhook was deleted",
    "invitation.created": "an invitation (or a password reset) link was made",
    "invitation.used": "an invitation link set a password",
    "user.created": "an account was made",
    "user.disabled": "an account was disabled",
    "user.enabled": "an account was enabled again",
    "user.deleted": "an account was deleted",
    "user.role": "an account's role changed (outcome: the new role)",
    "user.quota": "an account's quota changed (outcome: the new quota)",
    "policy.changed": "a server policy changed (outcome: name and new value)",
    "audit.pruned": "the oldest audit rows were pruned (outcome: how many)",
}


@dataclass(frozen=True)
class Actor:
    """Who did something, as the log names them."""

    id: int | None
    name: str


COMMAND_LINE = Actor(None, "command line")
# The server itself (a link noticed expired).
SERVER = Actor(None, "server")


def row_hash(prev_hash: str, fields: dict) -> str:
    """The hash that chains a row: SHA-256 over the previous row's hash and
    the row's fields, as canonical JSON (times naive UTC, to the microsecond,
    as every database stores them)."""
    body = json.dumps(
        [prev_hash, *(_plain(fields[name]) for name in FIELDS)],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(body.encode("ascii")).hexdigest()


def _plain(value: object) -> object:
    """A field as the hash reads it: a time in ISO form, to the microsecond."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return value


def _actor(actor: Actor | User | None) -> Actor:
    """Who did it: the one named, else the request's caller, else nobody
    (a visitor), else (outside a request) the command line."""
    if isinstance(actor, User):
        return Actor(actor.id, actor.username)
    if actor is not None:
        return actor
    if has_request_context():
        user = g.get("user")
        if user is not None:
            return Actor(user.id, user.username)
        return Actor(None, "")
    return COMMAND_LINE


def _fields(event: str, target: str, outcome: str, actor: Actor | User | None) -> dict:
    """The row's fields, but for its place in the chain."""
    assert event in AUDIT_EVENTS, event
    who = _actor(actor)
    address, agent, request_id = "", "", ""
    if has_request_context():
        address = request.remote_addr or ""
        agent = request.user_agent.string
        request_id = g.get("request_id", "")
    fields = {
        "event": event,
        "actor_id": who.id,
        "actor": who.name,
        "target": target,
        "outcome": outcome,
        "address": address,
        "user_agent": agent,
        "request_id": request_id,
    }
    for name, limit in LIMITS.items():
        fields[name] = str(fields[name])[:limit]
    return fields


def _last(
    connection: Connection, locked: bool = False
) -> tuple[int, str, datetime | None]:
    """The chain's last place, hash and time: the last row, else where
    pruning stopped, else the beginning. ``locked``: as a locking read, which
    on MariaDB makes the next writer on the same server wait for this one
    rather than race it (SQLite has one writer at a time anyway; Galera
    nodes still race, and the loser follows the winner)."""
    query = (
        select(AuditEvent.seq, AuditEvent.row_hash, AuditEvent.at)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    last = connection.execute(
        query.with_for_update() if locked else query
    ).one_or_none()
    if last is not None:
        return last.seq, last.row_hash, last.at.replace(tzinfo=None)
    anchor = _anchor(connection)
    return (anchor["seq"], anchor["hash"], None) if anchor else (0, GENESIS, None)


def _anchor(connection: Connection) -> dict | None:
    """Where pruning stopped, if it ever ran."""
    value = connection.execute(
        select(Setting.value).where(Setting.name == ANCHOR)
    ).scalar_one_or_none()
    return None if value is None else json.loads(value)


def record(
    event: str,
    target: str = "",
    outcome: str = "",
    actor: Actor | User | None = None,
) -> None:
    """Append an event to the log, in a transaction of its own: call it once
    what it tells of is committed (or was refused). ``actor``: who did it, if
    not the request's caller."""
    fields = _fields(event, target, outcome, actor)
    attempt = 1
    while True:
        try:
            with db.engine.begin() as connection:
                seq, prev_hash, last_at = _last(connection, locked=True)
                # Times never go back along the chain (a writer that lost a
                # race comes after the winner), so "since a time" is one run
                # of rows.
                at = utcnow().replace(tzinfo=None)
                row = {**fields, "seq": seq + 1, "at": max(at, last_at or at)}
                connection.execute(
                    insert(AuditEvent).values(
                        **row, prev_hash=prev_hash, row_hash=row_hash(prev_hash, row)
                    )
                )
            return
        except DBAPIError as error:
            # Another writer took this place (a duplicate key, or a conflict
            # in the cluster): follow its row instead.
            if attempt >= WRITE_ATTEMPTS or not (
                isinstance(error, IntegrityError) or is_retryable(error)
            ):
                # The kind of failure only: its parameters are the row's fields.
                logger.error(
                    "the audit log refused %s: %s %s",
                    event,
                    type(error.orig).__name__,
                    error_code(error) or "",
                )
                raise
        # A short pause: the writer ahead holds its place for one INSERT.
        time.sleep(random.uniform(0, 0.01 * min(attempt, 5)))
        attempt += 1


def target_user(user: User) -> str:
    """How a row names an account it was done to."""
    return f"user {user.id} {user.username}"


def rows(
    event: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """The newest rows first, filtered: an event (or its family, "link"
    for every ``link.*``), an actor's name, a time span; ``before_seq``
    pages back."""
    query = db.select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if event:
        query = query.where(
            (AuditEvent.event == event)
            | AuditEvent.event.startswith(event + ".", autoescape=True)
        )
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    return list(db.session.execute(query).scalars())


def rows_about(user: User, limit: int = 20) -> list[AuditEvent]:
    """The newest rows an account did, or that were done to it."""
    query = (
        db.select(AuditEvent)
        .where(
            (AuditEvent.actor_id == user.id) | (AuditEvent.target == target_user(user))
        )
        .order_by(AuditEvent.seq.desc())
        .limit(limit)
    )
    return list(db.session.execute(query).scalars())


def as_dict(row: AuditEvent) -> dict:
    """A row as the API and ``flask audit export`` give it."""
    return {
        "seq": row.seq,
        "at": row.at.isoformat(),
        "event": row.event,
        "actor_id": row.actor_id,
        "actor": row.actor,
        "target": row.target,
        "outcome": row.outcome,
        "address": row.address,
        "user_agent": row.user_agent,
        "request_id": row.request_id,
        "prev_hash": row.prev_hash,
        "row_hash": row.row_hash,
    }


def in_order(since: datetime | None = None, batch: int = 1000) -> Iterator[AuditEvent]:
    """Every row (since a time), oldest first, read in batches."""
    after = 0
    while True:
        query = (
            db.select(AuditEvent)
            .where(AuditEvent.seq > after)
            .order_by(AuditEvent.seq)
            .limit(batch)
        )
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        found = list(db.session.execute(query).scalars())
        if not found:
            return
        yield from found
        after = found[-1].seq
        db.session.expunge_all()


def verify() -> tuple[int, list[str], tuple[int, str]]:
    """Walk the chain from its start (or where pruning stopped): how many
    rows it checked, each break found (an edited row, a missing one), and
    the place and hash it ended at (to note: a later walk that ends before
    it, or at another hash there, shows rows deleted at the newest end)."""
    with db.engine.connect() as connection:
        anchor = _anchor(connection)
    seq, prev_hash = (anchor["seq"], anchor["hash"]) if anchor else (0, GENESIS)
    problems: list[str] = []
    checked = 0
    for row in in_order():
        fields = {name: getattr(row, name) for name in FIELDS}
        fields["at"] = row.at.replace(tzinfo=None)
        if row.seq != seq + 1:
            problems.append(f"rows {seq + 1} to {row.seq - 1} are missing")
        elif row.prev_hash != prev_hash:
            problems.append(f"row {row.seq} does not follow row {seq}")
        if row.row_hash != row_hash(row.prev_hash, fields):
            problems.append(f"row {row.seq} was changed after it was written")
        seq, prev_hash = row.seq, row.row_hash
        checked += 1
    return checked, problems, (seq, prev_hash)


def prune(before: datetime) -> int:
    """Delete the rows older than ``before`` from the old end, keeping the
    hash of the last one deleted as the chain's new anchor; how many went."""
    with db.engine.begin() as connection:
        last = connection.execute(
            select(AuditEvent.seq, AuditEvent.row_hash)
            .where(AuditEvent.at < before.replace(tzinfo=None))
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        ).one_or_none()
        if last is None:
            return 0
        anchor = json.dumps({"seq": last.seq, "hash": last.row_hash})
        updated = connection.execute(
            update(Setting)
            .where(Setting.name == ANCHOR)
            .values(value=anchor, updated_at=utcnow())
        )
        if not updated.rowcount:
            connection.execute(
                insert(Setting).values(name=ANCHOR, value=anchor, updated_at=utcnow())
            )
        gone = connection.execute(
            delete(AuditEvent).where(AuditEvent.seq <= last.seq)
        ).rowcount
    record("audit.pruned", outcome=f"{gone} rows")
    return gone
