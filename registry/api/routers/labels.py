"""Labels on a repository (``…/labels``) and on one of its versions (``…/versions/{ref}/labels``): the same
routes on both. (No ``from __future__ import annotations``: the routes' annotations name a local.)"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from registry.api.deps import Caller, ReadSession, WriteSession
from registry.api.pagination import Cursor, Limit, link_next
from registry.api.schemas import LabelEventOut, LabelOut, LabelsIn, LabelsOut, label_event_out, label_out
from registry.refs import Ref, RepoName
from registry.services import labels

router = APIRouter(prefix="/repos/{namespace}/{name}", tags=["labels"])


@dataclass(frozen=True)
class Target:
    repo: RepoName
    ref: Ref | None  # None: the repository itself


def repository(namespace: str, name: str) -> Target:
    return Target(RepoName.parse(f"{namespace}/{name}"), None)


def version(namespace: str, name: str, ref: str) -> Target:
    return Target(RepoName.parse(f"{namespace}/{name}"), Ref.parse(ref))


def _install(path: str, target_of: Callable[..., Target], what: str) -> None:
    """The label routes at ``path``, on the target ``target_of`` reads from the path."""
    On = Annotated[Target, Depends(target_of)]

    @router.get(path, summary=f"The labels of {what}", response_model=list[LabelOut])
    def list_labels(target: On, session: ReadSession, principal: Caller) -> list[LabelOut]:
        """By key."""
        found = labels.list_labels(session, target.repo, principal, ref=target.ref)
        return [label_out(label) for label in found]

    @router.put(path, name="label.set", summary=f"Set labels of {what}", response_model=LabelsOut)
    def set_labels(target: On, body: LabelsIn, session: WriteSession, principal: Caller) -> LabelsOut:
        """Set the keys of ``labels`` and remove those of ``remove``, all or nothing (400 naming the key
        at fault). A label set to its current value is no change."""
        changed = labels.set_labels(
            session, target.repo, body.labels, principal, ref=target.ref, remove=body.remove
        )
        found = labels.list_labels(session, target.repo, principal, ref=target.ref)
        return LabelsOut(labels=[label_out(label) for label in found], changed=changed)

    @router.delete(
        f"{path}/{{key:path}}",
        name="label.delete",
        status_code=status.HTTP_204_NO_CONTENT,
        summary=f"Remove a label of {what}",
    )
    def delete_label(key: str, target: On, session: WriteSession, principal: Caller) -> Response:
        """404 when there is no such label."""
        labels.remove_label(session, target.repo, key, principal, ref=target.ref)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get(f"{path}/history", summary=f"Label changes of {what}", response_model=list[LabelEventOut])
    def label_history(
        target: On,
        request: Request,
        response: Response,
        session: ReadSession,
        principal: Caller,
        key: Annotated[str | None, Query(max_length=256, description="only this label's changes")] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> list[LabelEventOut]:
        """Every change with its actor, newest first; one page (``Link: rel="next"`` for the next)."""
        page = labels.history(
            session, target.repo, principal, ref=target.ref, key=key, limit=limit, cursor=cursor
        )
        link_next(request, response, page.next_cursor)
        return [label_event_out(event) for event in page.items]


_install("/labels", repository, "a repository")
_install("/versions/{ref}/labels", version, "a version")
