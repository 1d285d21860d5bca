"""Queries on model cards."""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.db.models import Version, VersionCard


def add_card(session: Session, card: VersionCard) -> None:
    session.add(card)
    session.flush()


def card_of(session: Session, version: Version) -> VersionCard | None:
    return session.get(VersionCard, version.id)
