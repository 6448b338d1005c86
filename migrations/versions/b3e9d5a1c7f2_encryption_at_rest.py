"""Encryption at rest.

`file_chunk` gains the id of the storage key a row is sealed under (None:
stored in clear, as every row before this release) and a version that goes
up whenever the row is written again (`storage rekey` compares it);
`storage_key` records each key's id and check value; a sealed webhook
secret is longer than one kept in clear.

Both new columns go at the end of `file_chunk` with a default, which
MariaDB adds instantly, without copying the table's bytes.

Revision ID: b3e9d5a1c7f2
Revises: 7c096475b19d
Create Date: 2026-12-07 20:05:00.000000

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "b3e9d5a1c7f2"
down_revision = "7c096475b19d"
branch_labels = None
depends_on = None

# SQLite remakes the table to change a column: it keeps never reusing ids.
KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade():
    """Add the columns and the key table."""
    op.create_table(
        "storage_key",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("check_value", sa.String(length=64), nullable=False),
        sa.Column("added_at", models.UTCDateTime(), nullable=False),
        sa.Column("made_current_at", models.UTCDateTime(), nullable=True),
        sa.Column("retired_at", models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_key")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    op.add_column(
        "file_chunk", sa.Column("key_id", sa.String(length=32), nullable=True)
    )
    op.add_column(
        "file_chunk",
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
    )
    with op.batch_alter_table("webhook", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.alter_column(
            "secret",
            existing_type=sa.String(length=64),
            type_=sa.String(length=255),
            existing_nullable=False,
        )


def downgrade():
    """Remove them; refused while any chunk is sealed (it would not read)."""
    sealed = (
        op.get_bind()
        .execute(sa.text("SELECT COUNT(*) FROM file_chunk WHERE key_id IS NOT NULL"))
        .scalar()
    )
    if sealed:
        raise RuntimeError(
            f"{sealed} chunks are sealed under a storage key: they would not "
            "read after a downgrade"
        )
    with op.batch_alter_table("webhook", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.alter_column(
            "secret",
            existing_type=sa.String(length=255),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
    with op.batch_alter_table("file_chunk") as batch_op:
        batch_op.drop_column("version")
        batch_op.drop_column("key_id")
    op.drop_table("storage_key")
