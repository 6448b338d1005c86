"""What a new instance waits for before it serves (``flask prepare``, which a
container runs at every start): the database answering, and its schema
brought up to date by this instance or by another one."""

import os
import time
from collections.abc import Callable

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models import db

# The migrations (Flask-Migrate's directory, app.py).
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# How often to look again while waiting.
POLL_SECONDS = 2.0


class NotReady(Exception):
    """The database did not answer, or its schema did not come up to date, in
    the time given."""


def _why(error: DBAPIError) -> str:
    """The driver's own one-line reason for a failed connection."""
    return str(error.orig).strip().splitlines()[0] if error.orig else str(error)


def where() -> str:
    """The database's URL without its password, for log lines."""
    return db.engine.url.render_as_string(hide_password=True)


def wait_for_database(seconds: float, say: Callable[[str], None]) -> None:
    """Return once the database answers a query; tell ``say`` each failed
    try (at most every POLL_SECONDS), and raise NotReady after ``seconds``."""
    deadline = time.monotonic() + seconds
    tries = 0
    while True:
        tries += 1
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            if tries > 1:
                say(f"The database at {where()} answers")
            return
        except DBAPIError as error:
            reason = _why(error)
        db.engine.dispose()  # no broken connection is kept for the next try
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotReady(
                f"The database at {where()} did not answer within {seconds:g} s: "
                f"{reason}"
            )
        say(
            f"Waiting for the database at {where()} "
            f"(try {tries}, {left:.0f} s left): {reason}"
        )
        time.sleep(min(POLL_SECONDS, left))


def _heads() -> set[str]:
    """The revisions the migrations in the checkout end at."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return set(ScriptDirectory.from_config(config).get_heads())


def schema_is_current() -> bool:
    """Whether the database's schema is at the migrations' last revision."""
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == _heads()


def wait_for_schema(seconds: float, say: Callable[[str], None]) -> None:
    """Return once another instance (a one-shot migrate service) has brought
    the schema up to date; raise NotReady after ``seconds``."""
    deadline = time.monotonic() + seconds
    said = False
    while not schema_is_current():
        if time.monotonic() >= deadline:
            raise NotReady(
                f"The database at {where()} was not migrated within {seconds:g} s: "
                "run `flask init-db` (or the migrate service) first"
            )
        if not said:
            say("Waiting for the database's schema to be brought up to date")
            said = True
        time.sleep(POLL_SECONDS)
