"""The search documents (``search_documents``, one per repository): what search reads, kept current here.

Every service that changes what a document holds calls :func:`refresh` in its own transaction: a push, a
tag move or removal, a yank or unyank, a description or label change; deleting a repository deletes its
document (a cascade). ``updated_at`` is the time of that change: what ``sort=updated`` orders by.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import Repository, utcnow


def refresh(session: Session, repository: Repository) -> None:
    """Rewrite the repository's document from its latest version, its card and its description."""
    session.flush()  # the change just made, for the statement that reads it back
    queries.write_document(session, repository.id, updated_at=utcnow())


def rebuild(session: Session) -> int:
    """Rewrite every document in one statement (each changed when its latest version was pushed); how many
    there are. For bulk loads and repairs: the services keep them current otherwise."""
    return queries.write_all_documents(session)
