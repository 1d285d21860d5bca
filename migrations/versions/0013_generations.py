"""generations: change counters, bumped as the transactions that change what they count commit

``search`` counts the changes search can see: its answers are cached by it (registry.services.search).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    generations = op.create_table(
        "generations",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_generations"),
    )
    op.bulk_insert(generations, [{"name": "search", "value": 0}])


def downgrade() -> None:
    op.drop_table("generations")
