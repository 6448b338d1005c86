"""The migrations build exactly the models' schema, on SQLite and MariaDB."""

import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from conftest import MYSQL_SERVER_URL, SECRET_KEY
from models import db


@pytest.fixture(params=["sqlite", "mariadb"])
def empty_database(request, tmp_path):
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    request.getfixturevalue("mysql_database")  # skips or fails like the rest
    name = f"lockbox_migrate_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(MYSQL_SERVER_URL)
    with engine.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    yield f"{MYSQL_SERVER_URL}/{name}"
    with engine.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


@pytest.fixture
def migrated_app(empty_database):
    """An app on the empty database, its tables not yet created."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": empty_database,
        }
    )
    yield app
    with app.app_context():
        db.engine.dispose()


def test_upgrade_builds_the_models_schema(migrated_app):
    with migrated_app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, db.metadata) == []


def test_downgrade_returns_to_an_empty_database(migrated_app):
    with migrated_app.app_context():
        upgrade()
        downgrade(revision="base")
        tables = set(sa.inspect(db.engine).get_table_names())
        assert tables <= {"alembic_version"}


def test_init_db_applies_the_migrations(migrated_app):
    result = migrated_app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    with migrated_app.app_context():
        tables = set(sa.inspect(db.engine).get_table_names())
        assert set(db.metadata.tables) | {"alembic_version"} == tables
        again = migrated_app.test_cli_runner().invoke(args=["init-db"])
        assert again.exit_code == 0, again.output
