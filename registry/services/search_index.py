"""The search documents (``search_documents``, one per repository): what search reads, kept current here.

Every service that changes what a document holds calls :func:`refresh` in its own transaction: a push, a
tag move or removal, a yank or unyank, a description or label change; deleting a repository deletes its
document (a cascade). ``updated_at`` is the time of that change: what ``sort=updated`` orders by.

Every one of those changes, and the others search can see without a document rewrite (visibility, eval
metrics, deleted repositories, bases), also calls :func:`changed`: search's answers are cached under the
``search`` generation (:mod:`registry.db.generations`), which goes up as such a transaction commits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.db import generations, queries
from registry.db.models import Repository, utcnow


def refresh(session: Session, repository: Repository) -> None:
    """Rewrite the repository's document from its latest version, its card and its description."""
    session.flush()  # the change just made, for the statement that reads it back
    queries.write_document(session, repository.id, updated_at=utcnow())
    changed(session)


def changed(session: Session) -> None:
    """Something search can see changes in this transaction: its cached answers go stale as it commits."""
    generations.touch(session, generations.SEARCH)


def rebuild(session: Session) -> int:
    """Rewrite every document in one statement (each changed when its latest version was pushed); how many
    there are. For bulk loads and repairs: the services keep them current otherwise."""
    changed(session)
    return queries.write_all_documents(session)
