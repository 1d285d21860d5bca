"""Search: search_documents (one per repository) with the database's own full-text index, backfilled

On PostgreSQL a generated tsvector column with a GIN index; on SQLite an external-content FTS5 table kept
in sync by triggers. The text is tokenized as words of letters and digits on both: PostgreSQL's parser
would otherwise keep ``acme/tiny-bot`` or ``v1.2`` whole, so the separators it joins on become spaces.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 03:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FTS = "search_documents_fts"
TRIGGERS = {
    "search_documents_ai": "AFTER INSERT ON search_documents BEGIN "
    f"INSERT INTO {FTS} (rowid, text) VALUES (new.repository_id, new.text); END",
    "search_documents_ad": "AFTER DELETE ON search_documents BEGIN "
    f"INSERT INTO {FTS} ({FTS}, rowid, text) VALUES ('delete', old.repository_id, old.text); END",
    "search_documents_au": "AFTER UPDATE OF text ON search_documents BEGIN "
    f"INSERT INTO {FTS} ({FTS}, rowid, text) VALUES ('delete', old.repository_id, old.text); "
    f"INSERT INTO {FTS} (rowid, text) VALUES (new.repository_id, new.text); END",
}
FULL_TEXT = {
    "postgresql": [
        "ALTER TABLE search_documents ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
        """(to_tsvector('simple'::regconfig, translate("text", '-./:@_', '      '))) STORED""",
        "CREATE INDEX ix_search_documents_search_vector ON search_documents USING gin (search_vector)",
    ],
    "sqlite": [
        f"CREATE VIRTUAL TABLE {FTS} USING fts5(text, content=search_documents, content_rowid=repository_id)",
        *(f"CREATE TRIGGER {name} {body}" for name, body in TRIGGERS.items()),
    ],
}
# The strings of a card's metadata, as registry.db.queries.search reads them (frozen here).
CARD_STRINGS = {
    "sqlite": "(SELECT group_concat(value, ' ') FROM json_tree(c.card_data) WHERE type = 'text')",
    "postgresql": "(SELECT string_agg(j #>> '{}', ' ') FROM jsonb_path_query(CAST(c.card_data AS JSONB), "
    "'strict $.**') AS j WHERE jsonb_typeof(j) = 'string')",
}
LICENSE = {"sqlite": "json_extract(c.card_data, '$.license')", "postgresql": "c.card_data ->> 'license'"}
BACKFILL = """
INSERT INTO search_documents (repository_id, latest_version_id, base_id, license, updated_at, text)
SELECT l.id, l.version_id, v.base_id, lower({license}), COALESCE(v.created_at, r.created_at),
       substr(r.namespace || ' ' || r.name || ' ' || COALESCE(r.description, '') || ' '
              || COALESCE({card_strings}, '') || ' ' || COALESCE(c.markdown, ''), 1, 65536)
FROM (
    SELECT r.id, COALESCE(
        (SELECT t.version_id FROM tags t WHERE t.repository_id = r.id AND t.name = 'latest'),
        (SELECT v.id FROM versions v WHERE v.repository_id = r.id AND v.yanked_at IS NULL
         ORDER BY v.number DESC LIMIT 1)
    ) AS version_id
    FROM repositories r
) AS l
JOIN repositories r ON r.id = l.id
LEFT JOIN versions v ON v.id = l.version_id
LEFT JOIN version_cards c ON c.version_id = l.version_id
"""


def upgrade() -> None:
    op.create_table(
        "search_documents",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("latest_version_id", sa.Integer(), nullable=True),
        sa.Column("base_id", sa.Integer(), nullable=True),
        sa.Column("license", sa.String(length=256), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["base_id"], ["base_models.id"], name=op.f("fk_search_documents_base_id_base_models")
        ),
        sa.ForeignKeyConstraint(
            ["latest_version_id"],
            ["versions.id"],
            name=op.f("fk_search_documents_latest_version_id_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_search_documents_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", name=op.f("pk_search_documents")),
    )
    for name, columns in (
        ("updated_at", ["updated_at", "repository_id"]),
        ("base_id", ["base_id", "updated_at", "repository_id"]),
        ("license", ["license", "updated_at", "repository_id"]),
        ("latest_version_id", ["latest_version_id"]),
    ):
        op.create_index(f"ix_search_documents_{name}", "search_documents", columns)
    dialect = op.get_bind().dialect.name
    for statement in FULL_TEXT[dialect]:
        op.execute(statement)
    op.execute(BACKFILL.format(license=LICENSE[dialect], card_strings=CARD_STRINGS[dialect]))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in TRIGGERS:
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute(f"DROP TABLE {FTS}")
    for name in ("latest_version_id", "license", "base_id", "updated_at"):
        op.drop_index(f"ix_search_documents_{name}", table_name="search_documents")
    op.drop_table("search_documents")
