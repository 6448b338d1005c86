"""Each account's count of quota reservations.

Every transaction that changes what an account holds of its quota writes
`user.reservations` first (quotas.py), so that two of them at once are
ordered: by the row lock on one server, and by certification through two
nodes of a Galera cluster, where row locks stay on their node.

Revision ID: f2a7c9e4b1d3
Revises: e6a4c2b8d1f0
Create Date: 2026-12-07 00:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "f2a7c9e4b1d3"
down_revision = "e6a4c2b8d1f0"
branch_labels = None
depends_on = None


def upgrade():
    """Add user.reservations, starting at 0."""
    with op.batch_alter_table("user") as batch_op:
        batch_op.add_column(
            sa.Column(
                "reservations", sa.BigInteger(), nullable=False, server_default="0"
            )
        )


def downgrade():
    """Drop the count."""
    with op.batch_alter_table("user") as batch_op:
        batch_op.drop_column("reservations")
