"""The registry at a glance, as a caller sees it (the web UI's front page)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from registry.db.queries.overview import readable_counts
from registry.principal import Principal


@dataclass(frozen=True)
class Counts:
    repositories: int
    versions: int
    bases: int


def counts(session: Session, principal: Principal) -> Counts:
    """How many repositories and versions ``principal`` may read, and how many base models there are."""
    return Counts(*readable_counts(session, principal.readable_namespaces))
