"""A version's model card: as JSON, or its Markdown (``?format=markdown`` or ``Accept: text/markdown``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response

from registry.api.deps import Caller, ReadSession
from registry.api.schemas import CardOut, card_out
from registry.refs import Ref, RepoName, RepoRef
from registry.services import cards

router = APIRouter(prefix="/repos/{namespace}/{name}", tags=["versions"])
MARKDOWN = "text/markdown"


@router.get(
    "/versions/{ref}/card",
    response_model=CardOut,
    responses={200: {"content": {MARKDOWN: {"schema": {"type": "string"}}}}},
)
def get_card(
    namespace: str,
    name: str,
    ref: str,
    request: Request,
    session: ReadSession,
    principal: Caller,
    format: Literal["json", "markdown"] | None = None,
) -> CardOut | Response:
    """The card of a version (yanked ones too): README.md's front matter fields and Markdown, or the card
    the registry generated (no readable README.md, or a job's output), with what could not be read."""
    target = RepoRef(RepoName.parse(f"{namespace}/{name}"), Ref.parse(ref))
    card = cards.get_card(session, target, principal)
    if format == "markdown" or (format is None and MARKDOWN in request.headers.get("accept", "")):
        return Response(card.markdown, media_type=f"{MARKDOWN}; charset=utf-8")
    return card_out(card)
