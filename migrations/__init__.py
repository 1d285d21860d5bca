"""Alembic migrations of the metadata database (run by ``lorareg db upgrade`` and ``lorareg serve``)."""
