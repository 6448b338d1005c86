"""The access log of share links and upload requests.

`access_event` keeps, for every request that moved bytes through a share link
or an upload request: when, the client's address and user agent, what it
fetched or sent, how many bytes, and whether it completed.

Revision ID: c7d1e3f5a9b2
Revises: b9e4f2a7c1d5
Create Date: 2026-12-07 07:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "c7d1e3f5a9b2"
down_revision = "b9e4f2a7c1d5"
branch_labels = None
depends_on = None


def upgrade():
    """Add access_event."""
    op.create_table(
        "access_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("at", models.UTCDateTime(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("what", sa.String(length=255), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["upload_request.id"],
            name=op.f("fk_access_event_request_id_upload_request"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["share_id"],
            ["share.id"],
            name=op.f("fk_access_event_share_id_share"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_event")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("access_event") as batch_op:
        batch_op.create_index(batch_op.f("ix_access_event_at"), ["at"])
        batch_op.create_index(batch_op.f("ix_access_event_request_id"), ["request_id"])
        batch_op.create_index(batch_op.f("ix_access_event_share_id"), ["share_id"])


def downgrade():
    """Drop access_event."""
    op.drop_table("access_event")
