"""deployments: named sets of adapter refs for one base, their entries and their generations

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=96), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("base_id", sa.Integer(), nullable=False),
        sa.Column("current_generation", sa.Integer(), nullable=False),
        sa.Column("latest_generation", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["base_id"], ["base_models.id"], name="fk_deployments_base_id_base_models"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("namespace", "name", name="uq_deployments_namespace_name"),
    )
    op.create_index("ix_deployments_base_id", "deployments", ["base_id"])
    op.create_table(
        "deployment_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("ref", sa.String(length=512), nullable=False),
        sa.Column("repo", sa.String(length=193), nullable=False),
        sa.Column("ref_kind", sa.String(length=16), nullable=False),
        sa.Column("ref_value", sa.String(length=96), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "ref_kind IN ('tag', 'digest', 'number')", name="ck_deployment_entries_ref_kind_known"
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_deployment_entries_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_entries"),
        sa.UniqueConstraint("deployment_id", "name", name="uq_deployment_entries_deployment_id_name"),
    )
    op.create_index("ix_deployment_entries_repo_ref_value", "deployment_entries", ["repo", "ref_value"])
    op.create_table(
        "deployment_generations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cause", sa.String(length=512), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('applied', 'refused')", name="ck_deployment_generations_status_known"),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_deployment_generations_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_generations"),
        sa.UniqueConstraint("deployment_id", "number", name="uq_deployment_generations_deployment_id_number"),
    )


def downgrade() -> None:
    op.drop_table("deployment_generations")
    op.drop_index("ix_deployment_entries_repo_ref_value", table_name="deployment_entries")
    op.drop_table("deployment_entries")
    op.drop_index("ix_deployments_base_id", table_name="deployments")
    op.drop_table("deployments")
