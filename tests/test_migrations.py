"""The migrations build exactly the models' schema, on SQLite and MariaDB."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from harness.mariadb import scratch_database
from helpers import MYSQL_SERVER_URL, SECRET_KEY
from models import db


@pytest.fixture(params=["sqlite", "mariadb"])
def empty_database(request, tmp_path):
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    request.getfixturevalue("mysql_database")  # skips or fails like the rest
    with scratch_database(MYSQL_SERVER_URL, "lockbox_migrate") as url:
        yield url


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


INITIAL = "765d2db82b0d"


def test_upgrade_to_never_reused_ids_keeps_every_row(migrated_app):
    with migrated_app.app_context():
        upgrade(revision=INITIAL)
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO user (id, username, password_hash, created_at, "
                    "token_version) VALUES (1, 'ann', 'x', '2026-01-01', 0), "
                    "(2, 'ben', 'x', '2026-01-01', 4)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO stored_file (id, owner_id, filename, description, "
                    "content_type, size, chunk_size, complete, created_at, "
                    "updated_at) VALUES (9, 2, 'f.txt', '', 'text/plain', 3, 1024, "
                    "1, '2026-01-01', '2026-01-01')"
                )
            )
            connection.execute(
                sa.text("INSERT INTO file_chunk VALUES (9, 0, :data)"), {"data": b"abc"}
            )
        upgrade()
        with db.engine.begin() as connection:
            users = connection.execute(
                sa.text("SELECT id, username, token_version FROM user ORDER BY id")
            ).all()
            assert [(row.id, row.username) for row in users] == [(1, "ann"), (2, "ben")]
            versions = {row.token_version for row in users}
            assert len(versions) == 2 and all(len(v) >= 16 for v in versions)
            chunks = connection.execute(
                sa.text("SELECT file_id, data FROM file_chunk")
            ).all()
            assert [tuple(row) for row in chunks] == [(9, b"abc")]
            # The largest ids are gone; new rows still get new ids.
            connection.execute(sa.text("DELETE FROM user WHERE id = 2"))
            connection.execute(
                sa.text(
                    "INSERT INTO user (username, password_hash, created_at, "
                    "token_version) VALUES ('cal', 'x', '2026-01-01', 'v')"
                )
            )
            new_id = connection.execute(
                sa.text("SELECT id FROM user WHERE username = 'cal'")
            ).scalar_one()
            assert new_id == 3


def test_upgrade_to_file_counts_counts_each_accounts_finished_files(migrated_app):
    with migrated_app.app_context():
        upgrade(revision="d5e8b3f1a2c6")
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO user (id, username, password_hash, created_at, "
                    "token_version) VALUES (1, 'ann', 'x', '2026-01-01', 'a'), "
                    "(2, 'ben', 'x', '2026-01-01', 'b')"
                )
            )
            for file_id, owner, complete in [
                (7, 2, 1),
                (8, 2, 1),
                (9, 2, 0),
                (10, 1, 0),
            ]:
                connection.execute(
                    sa.text(
                        "INSERT INTO stored_file (id, owner_id, filename, "
                        "description, content_type, size, chunk_size, complete, "
                        "created_at, updated_at, reserved) VALUES (:id, :owner, "
                        "'f', '', 'text/plain', 0, 1024, :complete, '2026-01-01', "
                        "'2026-01-01', 0)"
                    ),
                    {"id": file_id, "owner": owner, "complete": complete},
                )
        upgrade()
        with db.engine.begin() as connection:
            counts = connection.execute(
                sa.text("SELECT id, file_count FROM user ORDER BY id")
            ).all()
        assert [tuple(row) for row in counts] == [(1, 0), (2, 2)]


def test_upgrade_to_links_to_several_files_gives_each_link_its_owner(migrated_app):
    with migrated_app.app_context():
        upgrade(revision="c7d1e3f5a9b2")
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO user (id, username, password_hash, created_at, "
                    "token_version, file_count) VALUES "
                    "(1, 'ann', 'x', '2026-01-01', 'a', 1), "
                    "(2, 'ben', 'x', '2026-01-01', 'b', 1)"
                )
            )
            for file_id, owner in [(7, 2), (8, 1)]:
                connection.execute(
                    sa.text(
                        "INSERT INTO stored_file (id, owner_id, filename, "
                        "description, content_type, size, chunk_size, complete, "
                        "created_at, updated_at, reserved) VALUES (:id, :owner, "
                        "'f', '', 'text/plain', 0, 1024, 1, '2026-01-01', "
                        "'2026-01-01', 0)"
                    ),
                    {"id": file_id, "owner": owner},
                )
            for share_id, file_id in [(3, 7), (4, 8), (5, 7)]:
                connection.execute(
                    sa.text(
                        "INSERT INTO share (id, public_id, file_id, created_at, "
                        "expires_at, downloads, owner_version) VALUES (:id, :public, "
                        ":file, '2026-01-01', '2027-01-01', 0, 'a')"
                    ),
                    {"id": share_id, "public": f"p{share_id}", "file": file_id},
                )
        upgrade()
        with db.engine.begin() as connection:
            owners = connection.execute(
                sa.text("SELECT id, file_id, owner_id FROM share ORDER BY id")
            ).all()
        assert [tuple(row) for row in owners] == [(3, 7, 2), (4, 8, 1), (5, 7, 2)]
