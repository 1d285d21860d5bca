"""Model cards, labels, eval results: version_cards, repository_labels, version_labels, label_events,
eval_metrics, repositories.description

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (see 0007: batch mode would copy ``repositories`` and cascade).
    op.add_column("repositories", sa.Column("description", sa.String(length=1024), nullable=True))
    op.create_table(
        "version_cards",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("card_data", sa.JSON(), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("generated", sa.Boolean(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name=op.f("fk_version_cards_version_id_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_version_cards")),
    )
    for table, owner, column in (
        ("repository_labels", "repositories", "repository_id"),
        ("version_labels", "versions", "version_id"),
    ):
        op.create_table(
            table,
            sa.Column(column, sa.Integer(), nullable=False),
            sa.Column("key", sa.String(length=128), nullable=False),
            sa.Column("value", sa.String(length=1024), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_by", sa.String(length=256), nullable=False),
            sa.ForeignKeyConstraint(
                [column], [f"{owner}.id"], name=op.f(f"fk_{table}_{column}_{owner}"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint(column, "key", name=op.f(f"pk_{table}")),
        )
        op.create_index(f"ix_{table}_key_value", table, ["key", "value"])
    op.create_table(
        "label_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("old_value", sa.String(length=1024), nullable=True),
        sa.Column("new_value", sa.String(length=1024), nullable=True),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_label_events_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name=op.f("fk_label_events_version_id_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_events")),
    )
    op.create_index("ix_label_events_target", "label_events", ["repository_id", "version_id", "key"])
    op.create_table(
        "eval_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("task", sa.String(length=256), nullable=False),
        sa.Column("metric", sa.String(length=256), nullable=False),
        sa.Column("name", sa.String(length=513), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("stderr", sa.Float(), nullable=True),
        sa.Column("dataset", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.CheckConstraint("source IN ('card', 'eval')", name=op.f("ck_eval_metrics_source_known")),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name=op.f("fk_eval_metrics_version_id_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_metrics")),
        sa.UniqueConstraint(
            "version_id", "source", "name", name=op.f("uq_eval_metrics_version_id_source_name")
        ),
    )
    op.create_index("ix_eval_metrics_name_value", "eval_metrics", ["name", "value"])


def downgrade() -> None:
    op.drop_index("ix_eval_metrics_name_value", table_name="eval_metrics")
    op.drop_table("eval_metrics")
    op.drop_index("ix_label_events_target", table_name="label_events")
    op.drop_table("label_events")
    for table in ("version_labels", "repository_labels"):
        op.drop_index(f"ix_{table}_key_value", table_name=table)
        op.drop_table(table)
    op.drop_table("version_cards")
    op.drop_column("repositories", "description")
