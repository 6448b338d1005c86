"""What Lockbox asks of a MariaDB Galera cluster, on every connection it opens.

Galera applies a transaction committed on one node to the others a moment
later. Without more, a file answered 201 through one node may not be listed
yet through another, and a token revoked through one may still open the
account through another. So every connection to MariaDB sets
``wsrep_sync_wait`` (GALERA_SYNC_WAIT, 1 by default: reads): before a read,
the node waits until it has applied everything the cluster had committed when
the read began. Acknowledged means visible everywhere, against any cluster
with stock settings, because the app asks for it itself. On a MariaDB server
without Galera the setting does nothing; a MySQL server that has no such
variable is left as it is.

Conflicting writes through different nodes (certification failures) surface
as deadlock errors at commit; models.retry_on_conflict runs the transaction
again.

``node_state()`` is what ``GET /healthz`` reports: whether this node is in the
cluster's primary component and synced, so that a balancer drains a node that
is not.
"""

from flask import current_app
from sqlalchemy import event, text

from models import db

# A node fit to serve: part of the primary component, and caught up.
SERVING_STATES = {("Primary", "Synced")}
STATE_QUERY = text(
    "SET STATEMENT wsrep_sync_wait = 0 FOR SHOW GLOBAL STATUS WHERE Variable_name "
    "IN ('wsrep_cluster_status', 'wsrep_local_state_comment')"
)


def _is_mysql(engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def init_app(app) -> None:
    """Ask every new MariaDB connection for causal reads (GALERA_SYNC_WAIT)."""
    sync_wait = app.config["GALERA_SYNC_WAIT"]
    logger = app.logger
    with app.app_context():
        engine = db.engine
    if not _is_mysql(engine):
        return

    @event.listens_for(engine, "connect")
    def causal_reads(dbapi_connection, connection_record):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION wsrep_sync_wait = {int(sync_wait)}")
        except Exception as error:  # noqa: BLE001 - each driver has its own class
            # A MySQL server without Galera's variables: nothing to ask.
            logger.debug("wsrep_sync_wait not set: %s", error)
        finally:
            cursor.close()


def node_state() -> tuple[bool, str | None]:
    """Whether this database node may serve, and its Galera state (None when
    the database is not a Galera node). Runs in the request's session."""
    if not _is_mysql(db.engine):
        return True, None
    if not db.session.execute(text("SELECT @@wsrep_on")).scalar():
        return True, None
    status = dict(db.session.execute(STATE_QUERY).all())
    cluster = status.get("wsrep_cluster_status", "unknown")
    local = status.get("wsrep_local_state_comment", "unknown")
    current_app.logger.debug("Galera node: %s, %s", cluster, local)
    return (cluster, local) in SERVING_STATES, f"{cluster}, {local}"
