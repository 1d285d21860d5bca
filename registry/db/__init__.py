"""Metadata database: SQLAlchemy models, engine and sessions, queries."""
