"""Base models as people browse them (the web UI): each with its shape summary and the adapters made for
it that the viewer may read. Who may look is :mod:`registry.services.bases`'s rule: any token."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from registry.adapters.base_manifest import BaseManifest
from registry.adapters.base_summary import ShapeSummary, summarize
from registry.db import queries
from registry.db.models import BaseModel, Version
from registry.db.queries.base_usage import adapter_counts
from registry.principal import Principal
from registry.services import bases, versions
from registry.services.pages import Page


@dataclass(frozen=True)
class CatalogEntry:
    """A base of the list, and how many unyanked adapter versions the viewer may read are made for it."""

    base: BaseModel
    shape: ShapeSummary
    adapters: int


def catalog(session: Session, principal: Principal) -> list[CatalogEntry]:
    """Every base model, by name: three statements (the bases with their manifests, their SHAs, the
    counts), whatever their number."""
    principal.require("read")
    found = queries.list_bases(session, with_manifests=True)
    counts = adapter_counts(session, readable_in=principal.readable_namespaces)
    return [
        CatalogEntry(base, summarize(BaseManifest.from_json(base.manifest)), counts.get(base.id, 0))
        for base in found
    ]


@dataclass(frozen=True)
class BaseOverview:
    """One base model: the SHA its name matched, its shape, and a page of the adapters made for it (with
    the tags pointing at each) out of ``adapter_count``."""

    base: BaseModel
    matched: str
    shape: ShapeSummary
    adapter_count: int
    adapters: Page[Version]
    tags: dict[int, list[str]]


def overview(
    session: Session, spec: str, principal: Principal, *, limit: int = 50, cursor: str | None = None
) -> BaseOverview:
    """The base ``spec`` names (any form :func:`bases.resolve_base` takes) and the adapters made for it
    in repositories ``principal`` may read, by repository, newest first; ``cursor`` continues a page."""
    principal.require("read")
    base, matched = bases.resolve_base(session, spec)
    page = bases.adapters_on_base(session, base.content_digest, principal, limit=limit, cursor=cursor)
    count = adapter_counts(session, readable_in=principal.readable_namespaces, base_id=base.id)
    return BaseOverview(
        base=base,
        matched=matched,
        shape=summarize(BaseManifest.from_json(base.manifest)),
        adapter_count=count.get(base.id, 0),
        adapters=page,
        tags=versions.tags_by_version(session, page.items),
    )
