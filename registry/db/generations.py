"""Change counters: a transaction that changes what a counter counts calls :func:`touch`, and the counter
goes up by one as that transaction commits (its last statement, so the row's lock is held for the commit
only, and two writers never wait on each other holding it). A reader that reads a counter before it reads
the data can cache what it read under that value: a later change commits a higher one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.db.models import Generation

SEARCH = "search"  # what search can see: documents, labels, metrics, visibility, bases
_TOUCHED = "lorareg_touched_generations"


def touch(session: Session, name: str) -> None:
    """Count a change to ``name`` in this transaction, when it commits."""
    session.info.setdefault(_TOUCHED, set()).add(name)


def value_of(name: str) -> Select[Any]:
    """The statement that reads counter ``name``."""
    return select(Generation.value).where(Generation.name == name)


def install(factory: sessionmaker[Session]) -> None:
    """Bump the counters a session's transaction touched as it commits; forget them when it rolls back."""

    @event.listens_for(factory, "before_commit")
    def _bump(session: Session) -> None:
        for name in sorted(session.info.pop(_TOUCHED, ())):
            bump = update(Generation).where(Generation.name == name).values(value=Generation.value + 1)
            session.execute(bump)

    @event.listens_for(factory, "after_rollback")
    def _forget(session: Session) -> None:
        session.info.pop(_TOUCHED, None)
