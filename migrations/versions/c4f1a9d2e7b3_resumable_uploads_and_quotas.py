"""Resumable (tus) uploads and storage quotas.

`resumable_upload` keeps what the tus protocol needs beside an unfinished
file: the hash of its URL's key, the announced length, the metadata, the
owner's token version and when it expires. `stored_file.reserved` holds an
unfinished file's announced length against its owner's quota, and
`user.quota_bytes` overrides the default quota for one account.

Revision ID: c4f1a9d2e7b3
Revises: b7e2d4c19a05
Create Date: 2026-12-04 13:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "c4f1a9d2e7b3"
down_revision = "b7e2d4c19a05"
branch_labels = None
depends_on = None


def upgrade():
    """Add resumable_upload, stored_file.reserved and user.quota_bytes."""
    op.create_table(
        "resumable_upload",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=True),
        sa.Column("upload_metadata", sa.String(length=4096), nullable=False),
        sa.Column("owner_version", sa.String(length=32), nullable=False),
        sa.Column("expires_at", models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["stored_file.id"],
            name=op.f("fk_resumable_upload_file_id_stored_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resumable_upload")),
        sa.UniqueConstraint("file_id", name=op.f("uq_resumable_upload_file_id")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_resumable_upload_key_hash")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("resumable_upload") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resumable_upload_expires_at"), ["expires_at"], unique=False
        )
    with op.batch_alter_table("stored_file") as batch_op:
        batch_op.add_column(
            sa.Column("reserved", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("user") as batch_op:
        batch_op.add_column(sa.Column("quota_bytes", sa.BigInteger(), nullable=True))


def downgrade():
    """Drop them again."""
    with op.batch_alter_table("user") as batch_op:
        batch_op.drop_column("quota_bytes")
    with op.batch_alter_table("stored_file") as batch_op:
        batch_op.drop_column("reserved")
    op.drop_table("resumable_upload")
