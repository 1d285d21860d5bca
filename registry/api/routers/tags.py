from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from registry.api.deps import Reader, ReadSession, Writer, WriteSession
from registry.api.schemas import TagEventOut, TagMoveIn, TagOut, tag_event_out, tag_out
from registry.db import queries
from registry.refs import Ref, RepoName
from registry.services import repos, tags

router = APIRouter(prefix="/repos/{namespace}/{name}/tags", tags=["tags"])


@router.get("")
def list_tags(namespace: str, name: str, session: ReadSession, _: Reader) -> list[TagOut]:
    repository = repos.get_repository(session, RepoName.parse(f"{namespace}/{name}"))
    return [tag_out(t) for t in queries.list_tags(session, repository)]


@router.put("/{tag}")
def move_tag(
    namespace: str, name: str, tag: str, body: TagMoveIn, session: WriteSession, principal: Writer
) -> TagOut:
    """Point a tag at a version; ``expected``/``expect_absent`` make it a compare-and-set (409 when stale)."""
    expected: Ref | bool | None = True
    if body.expect_absent:
        expected = None
    elif body.expected is not None:
        expected = Ref.parse(body.expected)
    repo = RepoName.parse(f"{namespace}/{name}")
    tags.move_tag(session, repo, tag, Ref.parse(body.target), expected=expected, actor=principal.name)
    moved = queries.get_tag(session, repos.get_repository(session, repo), tag)
    assert moved is not None
    return tag_out(moved)


@router.delete("/{tag}", status_code=status.HTTP_204_NO_CONTENT)
def delete_tag(namespace: str, name: str, tag: str, session: WriteSession, principal: Writer) -> Response:
    tags.remove_tag(session, RepoName.parse(f"{namespace}/{name}"), tag, actor=principal.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{tag}/history")
def tag_history(
    namespace: str,
    name: str,
    tag: str,
    session: ReadSession,
    _: Reader,
    limit: int = Query(100, ge=1, le=1000),
) -> list[TagEventOut]:
    """Every move of the tag, newest first."""
    return [
        tag_event_out(e)
        for e in tags.history(session, RepoName.parse(f"{namespace}/{name}"), tag, limit=limit)
    ]
