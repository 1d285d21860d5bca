"""Alembic environment: one transaction per migration, lock and statement timeouts on PostgreSQL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from registry.db.models import Base, described_by_models
from registry.db.session import make_engine

config = context.config


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        include_object=described_by_models,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET lock_timeout = '20s'"))
            connection.execute(text("SET statement_timeout = '300s'"))
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_object=described_by_models,
            transaction_per_migration=True,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
