"""Queries for comparing two versions: the diff jobs already made of them."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from registry.db.models import Job


def newest_diff(
    session: Session, first: tuple[str, str], second: tuple[str, str], statuses: Collection[str]
) -> Job | None:
    """The newest diff job in one of ``statuses`` whose inputs are ``first`` then ``second``, each a
    (repository, hex digest) pair, however its submitter spelled them (tag, number or digest)."""

    def input_is(position: int, repo: str, digest: str) -> list[ColumnElement[bool]]:
        return [
            Job.inputs[("versions", position, "repo")].as_string() == repo,
            Job.inputs[("versions", position, "digest")].as_string() == digest,
        ]

    return session.scalars(
        select(Job)
        .where(Job.kind == "diff", Job.status.in_(list(statuses)))
        .where(*input_is(0, *first), *input_is(1, *second))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(1)
    ).first()
