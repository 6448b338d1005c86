"""The causal read each request makes first on a Galera node (cluster.py),
against a real MariaDB server: what it does when its connection went stale,
and when it cannot be made. tests/cluster/ runs it on real clusters."""

import MySQLdb
import pytest

from cluster import CatchUp, NotCaughtUp
from harness.server import free_port
from helpers import make_app

pytestmark = pytest.mark.one_database

DRIVERS = ["mysql://", "mariadb+mariadbconnector://"]


@pytest.fixture(params=DRIVERS, ids=["mysqlclient", "mariadbconnector"])
def catch_up(request, mysql_database):
    """A CatchUp on the test MariaDB server, through each driver."""
    url = mysql_database.replace("mysql://", request.param, 1)
    app = make_app(url)
    catch_up = CatchUp(app, sync_wait=1)
    yield catch_up
    catch_up.engine.dispose()


def server_thread_of(catch_up) -> int:
    """The server's id of the pooled connection the causal read uses."""
    connection = catch_up.engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT CONNECTION_ID()")
        (thread,) = cursor.fetchone()
        cursor.close()
        return thread
    finally:
        connection.close()


def test_stale_connections_are_replaced_and_the_read_made_again(catch_up):
    # Three connections in the pool, as after three requests at once.
    held = [catch_up.engine.raw_connection() for _ in range(3)]
    threads = []
    for connection in held:
        cursor = connection.cursor()
        cursor.execute("SELECT CONNECTION_ID()")
        threads.append(cursor.fetchone()[0])
        cursor.close()
    for connection in held:
        connection.close()
    # The server ends them all (as a restart would).
    admin = MySQLdb.connect(host="127.0.0.1", port=3306, user="root")
    try:
        for thread in threads:
            admin.cursor().execute(f"KILL {int(thread)}")
    finally:
        admin.close()
    catch_up.wait()
    assert server_thread_of(catch_up) not in threads


def test_a_causal_read_that_cannot_be_made_is_not_caught_up(mysql_database):
    nobody = f"mysql://root@127.0.0.1:{free_port()}/lockbox"
    app = make_app(mysql_database)
    app.config["SQLALCHEMY_DATABASE_URI"] = nobody
    catch_up = CatchUp(app, sync_wait=1)
    with pytest.raises(NotCaughtUp, match="did not answer in time"):
        catch_up.wait()
