"""Upload requests: links that let people without an account send files.

`upload_request` keeps the public half of the link's signed token, what the
guest is told (title, note), expiry, optional password hash, the caps on
files and bytes, the kinds of file it takes, when it was closed, and the
owner's token version.
`stored_file.request_id` says which request a file came through.

Revision ID: b9e4f2a7c1d5
Revises: a8d3e5f7c2b9
Create Date: 2026-12-07 07:20:00.000000

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "b9e4f2a7c1d5"
down_revision = "a8d3e5f7c2b9"
branch_labels = None
depends_on = None

TABLE_OPTIONS = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
    "sqlite_autoincrement": True,
}


def upgrade():
    """Add upload_request, and stored_file.request_id pointing at it."""
    op.create_table(
        "upload_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=False),
        sa.Column("created_at", models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", models.UTCDateTime(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("max_files", sa.Integer(), nullable=True),
        sa.Column("max_bytes", sa.BigInteger(), nullable=False),
        sa.Column("allowed_types", sa.String(length=255), nullable=True),
        sa.Column("closed_at", models.UTCDateTime(), nullable=True),
        sa.Column("owner_version", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user.id"],
            name=op.f("fk_upload_request_owner_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_request")),
        sa.UniqueConstraint("public_id", name=op.f("uq_upload_request_public_id")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("upload_request") as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_request_owner_id"), ["owner_id"])
    with op.batch_alter_table("stored_file") as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_stored_file_request_id"), ["request_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_stored_file_request_id_upload_request"),
            "upload_request",
            ["request_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade():
    """Drop stored_file.request_id, then upload_request."""
    with op.batch_alter_table("stored_file") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_stored_file_request_id_upload_request"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_stored_file_request_id"))
        batch_op.drop_column("request_id")
    # The table takes its index with it (MySQL will not drop an index its
    # foreign key needs on its own).
    op.drop_table("upload_request")
