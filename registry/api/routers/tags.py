from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response, status

from registry.api.deps import Caller, ReadSession, RegistryDep, WriteSession
from registry.api.schemas import TagEventOut, TagMoveIn, TagOut, tag_event_out, tag_out
from registry.api.watch import WATCH_MAX_TIMEOUT, long_poll
from registry.refs import Ref, RepoName
from registry.services import tags

router = APIRouter(prefix="/repos/{namespace}/{name}/tags", tags=["tags"])


@router.get("")
def list_tags(namespace: str, name: str, session: ReadSession, principal: Caller) -> list[TagOut]:
    return [tag_out(t) for t in tags.list_tags(session, RepoName.parse(f"{namespace}/{name}"), principal)]


@router.put("/{tag}", name="tag.move")
def move_tag(
    namespace: str, name: str, tag: str, body: TagMoveIn, session: WriteSession, principal: Caller
) -> TagOut:
    """Point a tag at a version; ``expected``/``expect_absent`` make it a compare-and-set (409 when stale).
    A yanked version is refused (409) unless ``allow_yanked``."""
    repo = RepoName.parse(f"{namespace}/{name}")
    expected: Ref | Literal[True] | None = True
    if body.expect_absent:
        expected = None
    elif body.expected is not None:
        expected = Ref.parse_in(body.expected, repo)
    tags.move_tag(
        session,
        repo,
        tag,
        Ref.parse_in(body.target, repo),
        expected=expected,
        principal=principal,
        allow_yanked=body.allow_yanked,
    )
    return tag_out(tags.get_tag(session, repo, tag, principal))


@router.delete("/{tag}", status_code=status.HTTP_204_NO_CONTENT, name="tag.delete")
def delete_tag(namespace: str, name: str, tag: str, session: WriteSession, principal: Caller) -> Response:
    tags.remove_tag(session, RepoName.parse(f"{namespace}/{name}"), tag, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{tag}/history")
def tag_history(
    namespace: str,
    name: str,
    tag: str,
    session: ReadSession,
    principal: Caller,
    limit: int = Query(100, ge=1, le=1000),
) -> list[TagEventOut]:
    """Every move of the tag, newest first."""
    repo = RepoName.parse(f"{namespace}/{name}")
    return [tag_event_out(e) for e in tags.history(session, repo, tag, principal, limit=limit)]


@router.get(
    "/{tag}/watch",
    response_model=TagOut,
    responses={304: {"description": "the tag still points at `since` when the timeout ran out"}},
)
async def watch_tag(
    namespace: str,
    name: str,
    tag: str,
    request: Request,
    registry: RegistryDep,
    principal: Caller,
    since: str | None = Query(
        None, description="the digest the caller has; answer once the tag moves off it"
    ),
    timeout: float = Query(30.0, ge=0, le=WATCH_MAX_TIMEOUT, description="seconds to wait before a 304"),
) -> TagOut | Response:
    """Long-poll: answer with the tag as soon as it no longer points at ``since`` (at once without
    ``since``), 304 when ``timeout`` passes first, 404 once the tag is deleted.

    Each check is a short read transaction in a worker thread; between checks the request holds
    neither a session nor a thread.
    """
    repo = RepoName.parse(f"{namespace}/{name}")

    def check() -> TagOut | None:
        with registry.db.transaction(write=False) as session:
            found = tags.changed_tag(session, repo, tag, since, principal)
            return tag_out(found) if found is not None else None

    return await long_poll(request, check, timeout)
