"""Sign-in for teams: single sign-on and a second factor.

`user` gains a role, the identity provider's person it signs in as (issuer
and subject, unique together), the provider's refresh token and when it was
last checked, and a TOTP secret with its state; its password becomes
optional (an account made by single sign-on has none). `recovery_code`
keeps the hashed single-use codes that stand in for a second factor.

Revision ID: f4c8a2d6b9e1
Revises: e2b4d6f8a1c3
Create Date: 2026-12-07 13:20:00.000000

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "f4c8a2d6b9e1"
down_revision = "e2b4d6f8a1c3"
branch_labels = None
depends_on = None

# SQLite remakes the table to change a column: it keeps never reusing ids.
KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade():
    """Add the columns, the constraint and recovery_code."""
    with op.batch_alter_table("user", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.alter_column(
            "password_hash", existing_type=sa.String(length=255), nullable=True
        )
        batch_op.add_column(
            sa.Column(
                "role", sa.String(length=16), server_default="user", nullable=False
            )
        )
        batch_op.add_column(sa.Column("oidc_issuer", sa.String(length=255)))
        batch_op.add_column(sa.Column("oidc_subject", sa.String(length=255)))
        batch_op.add_column(sa.Column("oidc_refresh_token", sa.Text()))
        batch_op.add_column(sa.Column("oidc_checked_at", models.UTCDateTime()))
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=512)))
        batch_op.add_column(sa.Column("totp_enabled_at", models.UTCDateTime()))
        batch_op.add_column(
            sa.Column(
                "totp_last_step", sa.BigInteger(), server_default="0", nullable=False
            )
        )
        batch_op.create_unique_constraint(
            "uq_user_oidc", ["oidc_issuer", "oidc_subject"]
        )

    op.create_table(
        "recovery_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_recovery_code_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_code")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("recovery_code", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recovery_code_user_id"), ["user_id"], unique=False
        )


def downgrade():
    """Drop them again; accounts without a password cannot stay."""
    op.drop_table("recovery_code")
    user = sa.table("user", sa.column("password_hash"))
    op.execute(user.delete().where(user.c.password_hash.is_(None)))
    with op.batch_alter_table("user", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_constraint("uq_user_oidc", type_="unique")
        for name in (
            "totp_last_step",
            "totp_enabled_at",
            "totp_secret",
            "oidc_checked_at",
            "oidc_refresh_token",
            "oidc_subject",
            "oidc_issuer",
            "role",
        ):
            batch_op.drop_column(name)
        batch_op.alter_column(
            "password_hash", existing_type=sa.String(length=255), nullable=False
        )
