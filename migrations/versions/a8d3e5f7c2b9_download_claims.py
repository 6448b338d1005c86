"""Share downloads are resumed by a claim, not by the client's address.

A counted download no longer keeps a hash of the client's address: the
claim the client was given names the download (shares.py). The lookup
index by address goes with it; the share id keeps an index of its own
(which the foreign key needs).

Revision ID: a8d3e5f7c2b9
Revises: f2a7c9e4b1d3
Create Date: 2026-12-07 01:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "a8d3e5f7c2b9"
down_revision = "f2a7c9e4b1d3"
branch_labels = None
depends_on = None


def upgrade():
    """Index share_id alone, then drop the address and its index."""
    with op.batch_alter_table("share_download") as batch_op:
        batch_op.create_index("ix_share_download_share_id", ["share_id"])
    with op.batch_alter_table("share_download") as batch_op:
        batch_op.drop_index("ix_share_download_lookup")
        batch_op.drop_column("address_hash")


def downgrade():
    """Bring the column back (empty hashes: nothing to resume by address)."""
    with op.batch_alter_table("share_download") as batch_op:
        batch_op.add_column(
            sa.Column(
                "address_hash", sa.String(length=64), nullable=False, server_default=""
            )
        )
    with op.batch_alter_table("share_download") as batch_op:
        batch_op.create_index(
            "ix_share_download_lookup", ["share_id", "address_hash", "started_at"]
        )
        batch_op.drop_index("ix_share_download_share_id")
