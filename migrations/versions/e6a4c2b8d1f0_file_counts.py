"""Each account's count of finished files.

`user.file_count` is the listing's total: kept by the app whenever a file
becomes visible or goes, instead of counted over all the account's files on
every page. Filled here from the files already there.

Revision ID: e6a4c2b8d1f0
Revises: d5e8b3f1a2c6
Create Date: 2026-12-04 19:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "e6a4c2b8d1f0"
down_revision = "d5e8b3f1a2c6"
branch_labels = None
depends_on = None


def upgrade():
    """Add user.file_count and count every account's finished files."""
    with op.batch_alter_table("user") as batch_op:
        batch_op.add_column(
            sa.Column("file_count", sa.Integer(), nullable=False, server_default="0")
        )
    user = sa.table("user", sa.column("id", sa.Integer), sa.column("file_count"))
    stored_file = sa.table(
        "stored_file",
        sa.column("owner_id", sa.Integer),
        sa.column("complete", sa.Boolean),
    )
    finished = (
        sa.select(sa.func.count())
        .select_from(stored_file)
        .where(stored_file.c.owner_id == user.c.id, stored_file.c.complete.is_(True))
        .scalar_subquery()
    )
    op.execute(user.update().values(file_count=finished))


def downgrade():
    """Drop the count."""
    with op.batch_alter_table("user") as batch_op:
        batch_op.drop_column("file_count")
