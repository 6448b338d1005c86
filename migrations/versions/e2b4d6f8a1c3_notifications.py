"""Notifications: webhooks, e-mail, and their deliveries.

`webhook` keeps each account's addresses and the events they hear; `user`
gains an e-mail address, when it was confirmed and the events told there;
`delivery` is the durable queue, one row per event per webhook or address.
Links
and upload requests gain the flags that say their owner was told they
expired unused (or, for a request, that it is full); those already past
their expiry count as told, so that upgrading sends nothing about the past.

Revision ID: e2b4d6f8a1c3
Revises: d9f3b5c7e1a4
Create Date: 2026-12-07 10:01:55.850177

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "e2b4d6f8a1c3"
down_revision = "d9f3b5c7e1a4"
branch_labels = None
depends_on = None


def upgrade():
    """Add webhook and delivery, and the flags."""
    op.create_table(
        "webhook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("secret_shown", sa.Boolean(), nullable=False),
        sa.Column("events", sa.String(length=255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user.id"],
            name=op.f("fk_webhook_owner_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_owner_id"), ["owner_id"], unique=False
        )

    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("email_to", sa.String(length=254), nullable=True),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("batch_key", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", models.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", models.UTCDateTime(), nullable=False),
        sa.Column("lease_until", models.UTCDateTime(), nullable=True),
        sa.Column("last_attempt_at", models.UTCDateTime(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhook.id"],
            name=op.f("fk_delivery_webhook_id_webhook"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_delivery_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.UniqueConstraint("message_id", name=op.f("uq_delivery_message_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_batch_key"), ["batch_key"], unique=False
        )
        batch_op.create_index(
            "ix_delivery_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_delivery_webhook_id"), ["webhook_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_delivery_user_id"), ["user_id"], unique=False
        )

    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))
        batch_op.add_column(
            sa.Column("email_confirmed_at", models.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "email_events", sa.String(length=255), nullable=False, server_default=""
            )
        )
    false = sa.false()
    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "expiry_noticed", sa.Boolean(), nullable=False, server_default=false
            )
        )
    with op.batch_alter_table("upload_request", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "expiry_noticed", sa.Boolean(), nullable=False, server_default=false
            )
        )
        batch_op.add_column(
            sa.Column(
                "filled_noticed", sa.Boolean(), nullable=False, server_default=false
            )
        )
    now = models.utcnow()
    for table in ("share", "upload_request"):
        rows = sa.table(
            table,
            sa.column("expires_at", models.UTCDateTime()),
            sa.column("expiry_noticed", sa.Boolean()),
        )
        op.execute(
            rows.update().where(rows.c.expires_at <= now).values(expiry_noticed=True)
        )
    # The models set these; the defaults were for the rows already there.
    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.alter_column(
            "expiry_noticed", existing_type=sa.Boolean(), server_default=None
        )
    with op.batch_alter_table("upload_request", schema=None) as batch_op:
        batch_op.alter_column(
            "expiry_noticed", existing_type=sa.Boolean(), server_default=None
        )
        batch_op.alter_column(
            "filled_noticed", existing_type=sa.Boolean(), server_default=None
        )


def downgrade():
    """Drop the flags and e-mail settings, then delivery and webhook."""
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("email_events")
        batch_op.drop_column("email_confirmed_at")
        batch_op.drop_column("email")
    with op.batch_alter_table("upload_request", schema=None) as batch_op:
        batch_op.drop_column("filled_noticed")
        batch_op.drop_column("expiry_noticed")

    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.drop_column("expiry_noticed")

    # Each table takes its indexes with it (MySQL will not drop an index its
    # foreign key needs on its own).
    op.drop_table("delivery")
    op.drop_table("webhook")
