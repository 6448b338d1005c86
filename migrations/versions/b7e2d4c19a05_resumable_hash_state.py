"""An unfinished file keeps the SHA-256 of its bytes so far.

An append in one request (or process) goes on from the hash the last one
saved: `stored_file.hash_state`, OpenSSL's SHA256_CTX as 112 bytes, cleared
once the file is finished.

Revision ID: b7e2d4c19a05
Revises: a3c91f0e5b7d
Create Date: 2026-12-01 21:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "b7e2d4c19a05"
down_revision = "a3c91f0e5b7d"
branch_labels = None
depends_on = None


def upgrade():
    """Add stored_file.hash_state."""
    with op.batch_alter_table("stored_file") as batch_op:
        batch_op.add_column(sa.Column("hash_state", sa.LargeBinary(), nullable=True))


def downgrade():
    """Drop stored_file.hash_state."""
    with op.batch_alter_table("stored_file") as batch_op:
        batch_op.drop_column("hash_state")
