"""Links to several files.

`share.owner_id` names a link's owner (until now found through its one file),
`share.file_id` may be empty (a link to several files), and `share_file`
lists a link's files in their order.

Revision ID: d9f3b5c7e1a4
Revises: c7d1e3f5a9b2
Create Date: 2026-12-07 10:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "d9f3b5c7e1a4"
down_revision = "c7d1e3f5a9b2"
branch_labels = None
depends_on = None


def upgrade():
    """Add share.owner_id (filled from each link's file), let share.file_id
    be empty, and add share_file."""
    with op.batch_alter_table("share") as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE share SET owner_id = "
        "(SELECT stored_file.owner_id FROM stored_file"
        " WHERE stored_file.id = share.file_id)"
    )
    with op.batch_alter_table("share") as batch_op:
        batch_op.alter_column("owner_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("file_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_index(batch_op.f("ix_share_owner_id"), ["owner_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_share_owner_id_user"),
            "user",
            ["owner_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.create_table(
        "share_file",
        sa.Column("share_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["stored_file.id"],
            name=op.f("fk_share_file_file_id_stored_file"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["share_id"],
            ["share.id"],
            name=op.f("fk_share_file_share_id_share"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("share_id", "position", name=op.f("pk_share_file")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("share_file") as batch_op:
        batch_op.create_index(batch_op.f("ix_share_file_file_id"), ["file_id"])


def downgrade():
    """Drop share_file and the links to several files, then share.owner_id."""
    op.drop_table("share_file")
    op.execute("DELETE FROM share WHERE file_id IS NULL")
    with op.batch_alter_table("share") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_share_owner_id_user"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_share_owner_id"))
        batch_op.drop_column("owner_id")
        batch_op.alter_column("file_id", existing_type=sa.Integer(), nullable=False)
