"""quantized bases: how a base's weights are stored, the full-precision base a quantized one was made
from, and whether a version's adapter was trained on a quantized base or a full one

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


FK = "fk_base_models_quantized_from_id_base_models"
CHECK = "ck_versions_trained_on_known"
TRAINED_ON = "trained_on IN ('quantized', 'full')"


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        # ALTER TABLE … ADD COLUMN, constraints inline: batch mode would copy and drop base_models and
        # versions, which other tables' rows reference
        present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("base_models")}
        if "quantization" not in present:  # a downgrade on SQLite leaves both (see downgrade)
            op.execute("ALTER TABLE base_models ADD COLUMN quantization VARCHAR(32)")
        if "quantized_from_id" not in present:
            op.execute(
                "ALTER TABLE base_models ADD COLUMN quantized_from_id INTEGER "
                f"CONSTRAINT {FK} REFERENCES base_models (id)"
            )
        op.execute(
            f"ALTER TABLE versions ADD COLUMN trained_on VARCHAR(16) DEFAULT 'full' NOT NULL "
            f"CONSTRAINT {CHECK} CHECK ({TRAINED_ON})"
        )
    else:
        op.add_column("base_models", sa.Column("quantization", sa.String(length=32), nullable=True))
        op.add_column("base_models", sa.Column("quantized_from_id", sa.Integer(), nullable=True))
        op.create_foreign_key(op.f(FK), "base_models", "base_models", ["quantized_from_id"], ["id"])
        op.add_column(
            "versions", sa.Column("trained_on", sa.String(length=16), server_default="full", nullable=False)
        )
        op.create_check_constraint(op.f(CHECK), "versions", TRAINED_ON)
    op.create_index(op.f("ix_base_models_quantized_from_id"), "base_models", ["quantized_from_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_base_models_quantized_from_id"), "base_models")
    if op.get_context().dialect.name == "sqlite":
        # DROP COLUMN drops the column's own CHECK. base_models keeps its two nullable columns, which the
        # older schema ignores: dropping a column of a foreign key means copying the table, which the rows
        # of other tables reference (a populated database refuses it); the upgrade adds them only if absent
        op.execute("ALTER TABLE versions DROP COLUMN trained_on")
        return
    op.drop_constraint(op.f(CHECK), "versions", type_="check")
    op.drop_column("versions", "trained_on")
    op.drop_constraint(op.f(FK), "base_models", type_="foreignkey")
    op.drop_column("base_models", "quantized_from_id")
    op.drop_column("base_models", "quantization")
