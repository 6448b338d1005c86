"""Ids are never reused; every account gets a random token version.

SQLite hands the largest rowid of a table out again once its row is deleted,
unless the table is declared AUTOINCREMENT: a deleted user's tokens would open
the next user's account. SQLite cannot add AUTOINCREMENT in place, so `user`
and `stored_file` are copied into new tables with it (batch mode keeps every
row, and foreign keys are off while it runs: see env.py). MariaDB's InnoDB
already keeps its counters across restarts.

`user.token_version` was a counter that started at 0 for everybody; it becomes
a random string per account, which tokens carry and every request checks, so
that a token opens only the account it was issued for. Tokens issued before
this upgrade stop working: everybody signs in once more.

Revision ID: a3c91f0e5b7d
Revises: 765d2db82b0d
Create Date: 2026-12-01 20:10:00.000000

"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "a3c91f0e5b7d"
down_revision = "765d2db82b0d"
branch_labels = None
depends_on = None

USER = sa.table("user", sa.column("id", sa.Integer), sa.column("token_version"))


def upgrade():
    """AUTOINCREMENT on SQLite; a random token version for every account."""
    # Changing the column's type makes SQLite rebuild `user`; the rebuilt table
    # has AUTOINCREMENT (MySQL ignores the keyword argument and alters in place).
    with op.batch_alter_table(
        "user", table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.alter_column(
            "token_version",
            existing_type=sa.Integer(),
            type_=sa.String(length=32),
            existing_nullable=False,
        )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table(
            "stored_file",
            recreate="always",
            table_kwargs={"sqlite_autoincrement": True},
        ):
            pass
    for (user_id,) in bind.execute(sa.select(USER.c.id)).all():
        bind.execute(
            USER.update()
            .where(USER.c.id == user_id)
            .values(token_version=secrets.token_urlsafe(16))
        )


def downgrade():
    """Back to counters (every account at 0) and, on SQLite, plain rowids."""
    bind = op.get_bind()
    bind.execute(USER.update().values(token_version="0"))
    with op.batch_alter_table(
        "user", table_kwargs={"sqlite_autoincrement": False}
    ) as batch_op:
        batch_op.alter_column(
            "token_version",
            existing_type=sa.String(length=32),
            type_=sa.Integer(),
            existing_nullable=False,
        )
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table(
            "stored_file",
            recreate="always",
            table_kwargs={"sqlite_autoincrement": False},
        ):
            pass
