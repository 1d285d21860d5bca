"""rollouts and replicas: a deployment's canary policy and canary generation, and each replica's heartbeat

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('applied', 'refused')"
# 0012 named its check constraint without op.f(), so the naming convention prefixed it twice
OLD_CHECK = "ck_deployment_generations_ck_deployment_generations_status_known"
CHECK = "ck_deployment_generations_status_known"
STATUSES = "status IN ('applied', 'refused', 'canary', 'promoted', 'superseded', 'rolled_back')"


def upgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        table.add_column(sa.Column("canary_selector", sa.String(length=320), nullable=True))
        table.add_column(sa.Column("auto_promote_after", sa.Integer(), nullable=True))
        table.add_column(sa.Column("canary_generation", sa.Integer(), nullable=True))
        table.add_column(sa.Column("canary_started_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("deployment_generations") as table:
        table.drop_constraint(op.f(OLD_CHECK), type_="check")
        table.create_check_constraint(op.f(CHECK), STATUSES)
    op.create_table(
        "deployment_replicas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("replica", sa.String(length=128), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("engine_url", sa.String(length=2048), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("loaded", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("interval", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("engine IN ('vllm', 'sglang')", name=op.f("ck_deployment_replicas_engine_known")),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_replicas_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_replicas")),
        sa.UniqueConstraint(
            "deployment_id", "replica", name=op.f("uq_deployment_replicas_deployment_id_replica")
        ),
    )


def downgrade() -> None:
    op.drop_table("deployment_replicas")
    # the generations that were never current (canaries) read as refused to the older schema
    op.execute("UPDATE deployment_generations SET status = 'refused' WHERE status <> 'applied'")
    with op.batch_alter_table("deployment_generations") as table:
        table.drop_constraint(op.f(CHECK), type_="check")
        table.create_check_constraint(op.f(OLD_CHECK), OLD_STATUSES)
    with op.batch_alter_table("deployments") as table:
        table.drop_column("canary_started_at")
        table.drop_column("canary_generation")
        table.drop_column("auto_promote_after")
        table.drop_column("canary_selector")
