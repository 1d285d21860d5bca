"""versions.pushed_by: the authenticated principal that pushed a version (author stays what the client
claims)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (see 0007: batch mode would copy ``versions`` and cascade). Older versions were
    # pushed by a principal nobody recorded: null.
    op.add_column("versions", sa.Column("pushed_by", sa.String(length=256), nullable=True))


def downgrade() -> None:
    op.drop_column("versions", "pushed_by")
