"""What Lockbox asks of a MariaDB Galera cluster, and how it answers when the
cluster changes shape.

Causal reads. Galera applies a transaction committed on one node to the
others a moment later: without more, a file answered 201 through one node may
not be listed yet through another, and a token revoked through one may still
open the account through another. So each request, before its first
statement, waits until its node has applied everything the cluster had
committed: one causal read (``SELECT 1`` with ``wsrep_sync_wait`` =
GALERA_SYNC_WAIT, 1 by default). Its own statements then read the node
locally (``wsrep_sync_wait`` 0 on every connection): the node's applied state
only moves forward, so they see at least what the cluster had committed when
the request began. Acknowledged means visible everywhere, on a cluster with
stock settings, because the app asks for it itself.

A bounded wait. A node that dies without a word (a power cut, a kernel
panic) stops every commit and every causal read on the survivors until
Galera gives up on it: 5 to 15 s with its stock settings. Nothing on the
server side cuts a causal read short (``max_statement_time``, ``KILL QUERY``
and ``repl.causal_read_timeout`` all wait the stall out; docs/deploy.md), so
the causal read runs on a connection of its own with a client-side read
timeout, GALERA_SYNC_TIMEOUT (10 s by default): past it the request answers
503, and nginx tries the next instance. Everything else a request reads is
local and cannot stall. Writes wait for the cluster as long as it takes, as
they must: a commit cut short by a client timeout would leave its outcome
unknown.

Nodes that are not ready. A node outside the primary component, or still
catching up as it rejoins, refuses every statement on a table with 1047
("WSREP has not yet prepared node for application use"), its rollbacks too,
and a commit it cannot replicate with 1180. Such a connection is treated as
lost: SQLAlchemy replaces it, the request answers 503 (or is retried, for the
writes models.retry_on_conflict runs), and nothing is logged as a bug.

Conflicting writes through different nodes (certification failures) surface
as deadlock errors at commit; models.retry_on_conflict runs the transaction
again.

``node_state()`` is what ``GET /healthz`` reports: whether this node is in the
cluster's primary component and synced, so that a balancer drains a node that
is not.
"""

import time

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from models import CLUSTER_CHANGE_ERROR_CODES, db, error_code

# A node fit to serve: part of the primary component, and caught up.
SERVING_STATES = {("Primary", "Synced")}
STATE_QUERY = text(
    "SET STATEMENT wsrep_sync_wait = 0 FOR SHOW GLOBAL STATUS WHERE Variable_name "
    "IN ('wsrep_cluster_status', 'wsrep_local_state_comment')"
)
# Set on a pooled connection's record when its server is a Galera node.
GALERA = "lockbox.galera"
# Set on ``g`` once the request (or command) has caught up with the cluster.
CAUGHT_UP = "galera_caught_up"


def _is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def init_app(app: Flask) -> None:
    """On MariaDB: local reads on every connection, one bounded causal read
    before each request's first statement, and connections to a node that is
    not ready treated as lost."""
    with app.app_context():
        engine = db.engine
    if not _is_mysql(engine):
        return
    logger = app.logger

    def read_locally(
        dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry
    ) -> None:
        """Note whether the server is a Galera node; if so, this connection's
        reads wait for nobody (the request's causal read did)."""
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT @@wsrep_on")
            row = cursor.fetchone()
            assert row is not None  # a SELECT of one value answers one row
            galera = bool(row[0])
            if galera:
                cursor.execute("SET SESSION wsrep_sync_wait = 0")
        except Exception as error:  # noqa: BLE001 - each driver has its own class
            # A MySQL server without Galera's variables: nothing to ask.
            logger.debug("Not a Galera node: %s", error)
            galera = False
        finally:
            cursor.close()
        connection_record.info[GALERA] = galera

    event.listen(engine, "connect", read_locally)
    event.listen(engine, "handle_error", _not_ready_is_lost)
    sync_wait = app.config["GALERA_SYNC_WAIT"]
    if not sync_wait:
        return
    catch_up = CatchUp(app, sync_wait)
    app.extensions["lockbox.catch_up"] = catch_up

    def catch_up_first(
        dbapi_connection: DBAPIConnection,
        connection_record: ConnectionPoolEntry,
        connection_proxy: PoolProxiedConnection,
    ) -> None:
        """Before the request's first statement on a Galera node: the causal
        read, once per request (or command)."""
        if (
            not connection_record.info.get(GALERA)
            or not has_app_context()
            or g.get(CAUGHT_UP)
        ):
            return
        catch_up.wait()
        setattr(g, CAUGHT_UP, True)

    event.listen(engine, "checkout", catch_up_first)


class NotCaughtUp(RuntimeError):
    """The node did not catch up with the cluster within GALERA_SYNC_TIMEOUT,
    or could not be asked: the request answers 503 (errors.py)."""


class CatchUp:
    """The causal read a request makes first: ``SELECT 1`` with
    ``wsrep_sync_wait``, on a pool of connections of its own that have a
    client-side read timeout (GALERA_SYNC_TIMEOUT) and do nothing else.

    It runs on every request, so it is kept cheap: raw pooled connections in
    autocommit (no statement wrapping, no transaction to end), and no ping
    before each use. A pooled connection that went stale (the server
    restarted since) fails at once instead: the pool is emptied (its other
    connections are as old) and the read made once more on a new one. A read
    that failed after a while timed out, and is not made again."""

    # Failing faster than this means a broken connection, not a timeout.
    STALE_SECONDS = 1.0

    def __init__(self, app: Flask, sync_wait: int) -> None:
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.update(
            connect_args={
                **options.get("connect_args", {}),
                "read_timeout": app.config["GALERA_SYNC_TIMEOUT"],
            },
            isolation_level="AUTOCOMMIT",
            pool_pre_ping=False,
            pool_reset_on_return=None,
        )
        self.engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], **options)
        self.statement = (
            f"SET STATEMENT wsrep_sync_wait = {int(sync_wait)} FOR SELECT 1"
        )
        self.timeout = app.config["GALERA_SYNC_TIMEOUT"]
        self.logger = app.logger

    def wait(self) -> None:
        """Return once the node has applied what the cluster had committed;
        NotCaughtUp when it did not within the timeout, or did not answer."""
        for attempt in (1, 2):
            started = time.monotonic()
            connection = None
            try:
                connection = self.engine.raw_connection()
                cursor = connection.cursor()
                cursor.execute(self.statement)
                cursor.fetchall()
                cursor.close()
                connection.close()  # back to the pool
                return
            except Exception as error:  # noqa: BLE001 - each driver has its own
                if connection is not None:
                    connection.invalidate()
                took = time.monotonic() - started
                if attempt == 1 and took < self.STALE_SECONDS:
                    self.engine.dispose()
                    continue
                self.logger.warning(
                    "No causal read within %s s (%.1f s): %s", self.timeout, took, error
                )
                raise NotCaughtUp(
                    "The database cluster did not answer in time; try again"
                ) from error


def _not_ready_is_lost(context: ExceptionContext) -> None:
    """A node that is not ready (1047, 1180) refuses the connection's every
    statement, its rollback too: SQLAlchemy is told to replace the
    connection (ExceptionContext.is_disconnect), not the whole pool."""
    error = context.sqlalchemy_exception
    if error is not None and error_code(error) in CLUSTER_CHANGE_ERROR_CODES:
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False


def skip_catch_up() -> None:
    """This request reads nothing another node may have written (the node's
    own state, for /healthz): its statements need no causal read first."""
    setattr(g, CAUGHT_UP, True)


def node_state() -> tuple[bool, str | None]:
    """Whether this database node may serve, and its Galera state (None when
    the database is not a Galera node). Runs in the request's session."""
    if not _is_mysql(db.engine):
        return True, None
    if not db.session.execute(text("SELECT @@wsrep_on")).scalar():
        return True, None
    status: dict[str, str] = dict(db.session.execute(STATE_QUERY).all())
    cluster = status.get("wsrep_cluster_status", "unknown")
    local = status.get("wsrep_local_state_comment", "unknown")
    current_app.logger.debug("Galera node: %s, %s", cluster, local)
    return (cluster, local) in SERVING_STATES, f"{cluster}, {local}"
