"""Files that expire.

`stored_file` gains when it expires, in the listing index (whose page ids
then still come from the index alone) and in an index of its own for an
account's expired files and `files gc`; `user` gains the lifetime its new
files get by default.

Revision ID: c5d1e8f3a9b4
Revises: b3e9d5a1c7f2
Create Date: 2026-12-07 20:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

import models

revision = "c5d1e8f3a9b4"
down_revision = "b3e9d5a1c7f2"
branch_labels = None
depends_on = None

# SQLite remakes the table to change a column: it keeps never reusing ids.
KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade():
    """Add the columns and indexes."""
    with op.batch_alter_table("stored_file", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", models.UTCDateTime(), nullable=True)
        )
        # First the index that starts with owner_id too: MariaDB keeps an
        # index for the owner's foreign key at every step.
        batch_op.create_index(
            "ix_stored_file_expiry", ["owner_id", "expires_at"], unique=False
        )
        batch_op.drop_index("ix_stored_file_listing")
        batch_op.create_index(
            "ix_stored_file_listing",
            ["owner_id", "complete", "created_at", "expires_at"],
            unique=False,
        )
    with op.batch_alter_table("user", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.add_column(
            sa.Column("file_lifetime_seconds", sa.Integer(), nullable=True)
        )


def downgrade():
    """Remove them."""
    with op.batch_alter_table("user", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_column("file_lifetime_seconds")
    with op.batch_alter_table("stored_file", table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_index("ix_stored_file_listing")
        batch_op.create_index(
            "ix_stored_file_listing",
            ["owner_id", "complete", "created_at"],
            unique=False,
        )
        batch_op.drop_index("ix_stored_file_expiry")
        batch_op.drop_column("expires_at")
