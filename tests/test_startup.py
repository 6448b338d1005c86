"""``flask prepare``, what a container runs at every start: it waits for the
database within a bound and says what it waits for, migrates it or waits
for another instance to, and makes the first administrator only once."""

import re

import pytest
import sqlalchemy as sa

import startup
from app import create_app
from helpers import SECRET_KEY
from models import User, db


def drop_everything() -> None:
    """No table left, the migrations' own included (drop_all leaves it)."""
    db.session.remove()
    db.drop_all()
    with db.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))


def test_prepare_migrates_and_makes_one_administrator_once(app, runner):
    with app.app_context():
        drop_everything()
        try:
            first = runner.invoke(args=["prepare", "--wait", "5"])
            second = runner.invoke(args=["prepare", "--wait", "5"])
            admins = db.session.scalars(db.select(User.username)).all()
            current = startup.schema_is_current()
        finally:
            drop_everything()
            db.create_all()
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "Database ready" in first.output
    # The password is printed once, on the first start only.
    assert len(re.findall(r"password: \S+", first.output)) == 1
    assert "password:" not in second.output
    assert "Users exist already" in second.output
    assert admins == ["admin"]
    assert current


@pytest.mark.one_database
def test_prepare_without_bootstrap_makes_no_user(app, runner, monkeypatch):
    monkeypatch.setenv("LOCKBOX_BOOTSTRAP", "0")
    result = runner.invoke(args=["prepare", "--wait", "5"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(db.select(sa.func.count(User.id))) == 0


@pytest.mark.one_database
def test_a_database_that_never_answers_is_a_clear_error_within_the_bound(
    tmp_path, monkeypatch
):
    # A port nothing listens on: the connection is refused at once, each try.
    lost = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": "mysql://nobody@127.0.0.1:9/lockbox",
        }
    )
    monkeypatch.setattr(startup, "POLL_SECONDS", 0.1)
    result = lost.test_cli_runner().invoke(args=["prepare", "--wait", "1"])
    assert result.exit_code == 1
    waits = [line for line in result.output.splitlines() if "Waiting for" in line]
    assert waits, result.output
    assert "nobody@127.0.0.1:9/lockbox" in waits[0]
    assert "did not answer within 1 s" in result.output
    assert "Traceback" not in result.output


def test_waiting_for_migrations_ends_when_another_instance_has_run_them(
    app, runner, monkeypatch
):
    # Nothing migrated (no alembic_version): a wait ends in a clear error ...
    monkeypatch.setattr(startup, "POLL_SECONDS", 0.1)
    with app.app_context():
        drop_everything()
        db.create_all()
    result = runner.invoke(args=["prepare", "--migrations", "wait", "--wait", "1"])
    assert result.exit_code == 1
    assert "Waiting for the database's schema" in result.output
    assert "was not migrated within 1 s" in result.output
    # ... and once another instance has migrated, it goes straight on.
    with app.app_context():
        drop_everything()
        try:
            migrated = runner.invoke(args=["init-db"])
            waited = runner.invoke(
                args=["prepare", "--migrations", "wait", "--no-bootstrap"]
            )
        finally:
            drop_everything()
            db.create_all()
    assert migrated.exit_code == 0, migrated.output
    assert waited.exit_code == 0, waited.output
    assert "Waiting for the database's schema" not in waited.output
