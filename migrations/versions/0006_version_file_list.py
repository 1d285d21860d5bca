"""versions.file_list: a version's files on its own row, so a resolve is one indexed query

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 08:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("file_list", sa.JSON(), nullable=False, server_default="[]"))
    versions = sa.table("versions", sa.column("id", sa.Integer()), sa.column("file_list", sa.JSON()))
    files = sa.table(
        "version_files",
        sa.column("version_id", sa.Integer()),
        sa.column("path", sa.String()),
        sa.column("blob_digest", sa.String()),
        sa.column("size", sa.BigInteger()),
    )
    bind = op.get_bind()
    by_version: dict[int, list[dict[str, object]]] = {}
    for row in bind.execute(sa.select(files).order_by(files.c.version_id, files.c.path)):
        by_version.setdefault(row.version_id, []).append(
            {"path": row.path, "digest": row.blob_digest, "size": row.size}
        )
    for version_id, listed in by_version.items():
        bind.execute(sa.update(versions).where(versions.c.id == version_id).values(file_list=listed))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("file_list")
