"""repositories.visibility, blob_uploads (who proved they hold a blob), audit_events

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite's batch mode would copy and drop ``repositories``, and with foreign keys
    # on, dropping it cascades to every version. SQLite cannot add a CHECK to an existing table.
    op.add_column(
        "repositories",
        sa.Column("visibility", sa.String(length=16), nullable=False, server_default="private"),
    )
    if op.get_bind().dialect.name != "sqlite":
        op.create_check_constraint("visibility_known", "repositories", "visibility IN ('private', 'public')")
    op.create_table(
        "blob_uploads",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", "token_id", name=op.f("pk_blob_uploads")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("namespace", sa.String(length=96), nullable=True),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("result", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_namespace_id", "audit_events", ["namespace", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_namespace_id", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("blob_uploads")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_repositories_visibility_known"), "repositories", type_="check")
    op.drop_column("repositories", "visibility")
