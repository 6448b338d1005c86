"""Share links and personal access tokens.

`share` is a link to one file for people without an account: the public half
of its signed token, expiry, optional password hash and download limit, the
count, and the owner's token version; `share_download` the counted downloads
that Range requests may resume. `access_token` keeps a personal access
token's hash, name, scopes, expiry and last use.

Revision ID: d5e8b3f1a2c6
Revises: c4f1a9d2e7b3
Create Date: 2026-12-04 15:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "d5e8b3f1a2c6"
down_revision = "c4f1a9d2e7b3"
branch_labels = None
depends_on = None

TABLE_OPTIONS = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
    "sqlite_autoincrement": True,
}


def upgrade():
    """Add the share and access_token tables."""
    op.create_table(
        "share",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("created_at", models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", models.UTCDateTime(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("max_downloads", sa.Integer(), nullable=True),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.Column("last_download_at", models.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", models.UTCDateTime(), nullable=True),
        sa.Column("owner_version", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["stored_file.id"],
            name=op.f("fk_share_file_id_stored_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share")),
        sa.UniqueConstraint("public_id", name=op.f("uq_share_public_id")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("share") as batch_op:
        batch_op.create_index(batch_op.f("ix_share_file_id"), ["file_id"])
    op.create_table(
        "share_download",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.Integer(), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("started_at", models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["share_id"],
            ["share.id"],
            name=op.f("fk_share_download_share_id_share"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_download")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("share_download") as batch_op:
        batch_op.create_index(
            "ix_share_download_lookup", ["share_id", "address_hash", "started_at"]
        )
        batch_op.create_index(
            batch_op.f("ix_share_download_started_at"), ["started_at"]
        )
    op.create_table(
        "access_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.String(length=255), nullable=False),
        sa.Column("owner_version", sa.String(length=32), nullable=False),
        sa.Column("created_at", models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", models.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_access_token_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_access_token_token_hash")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("access_token") as batch_op:
        batch_op.create_index(batch_op.f("ix_access_token_user_id"), ["user_id"])


def downgrade():
    """Drop them again."""
    op.drop_table("access_token")
    op.drop_table("share_download")
    op.drop_table("share")
