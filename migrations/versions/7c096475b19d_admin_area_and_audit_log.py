"""Admin area and audit log.

`user` gains when an administrator disabled it and when it last signed in;
`invitation` keeps the hashed single-use links that set a password (a new
account, a reset); `setting` keeps the server's policies; `audit_event` is
the chained, append-only record of security-relevant events.

Revision ID: 7c096475b19d
Revises: f4c8a2d6b9e1
Create Date: 2026-12-07 16:05:43.982103

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "7c096475b19d"
down_revision = "f4c8a2d6b9e1"
branch_labels = None
depends_on = None

# SQLite remakes the table to change a column: it keeps never reusing ids.
KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade():
    """Add the columns and the three tables."""
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", models.UTCDateTime(), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("outcome", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_event")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_event_actor_id"), ["actor_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_event_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_event_event"), ["event"], unique=False
        )

    op.create_table(
        "setting",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("updated_at", models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_setting")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "invitation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("created_at", models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", models.UTCDateTime(), nullable=False),
        sa.Column("used_at", models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_invitation_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitation")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitation_token_hash")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invitation_user_id"), ["user_id"], unique=False
        )

    with op.batch_alter_table("user", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.add_column(
            sa.Column("disabled_at", models.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("last_sign_in_at", models.UTCDateTime(), nullable=True)
        )


def downgrade():
    """Drop them again."""
    with op.batch_alter_table("user", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_column("last_sign_in_at")
        batch_op.drop_column("disabled_at")

    # With its index: MySQL keeps it while the foreign key needs it.
    op.drop_table("invitation")
    op.drop_table("setting")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_event"))
        batch_op.drop_index(batch_op.f("ix_audit_event_at"))
        batch_op.drop_index(batch_op.f("ix_audit_event_actor_id"))

    op.drop_table("audit_event")
