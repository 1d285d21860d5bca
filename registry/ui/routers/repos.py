"""A repository's page, a version's page, a file's bytes, and the writers' forms (tags, yank, labels,
description): each form calls the service the API calls (audited there) and goes back to its page.

A ref in these URLs is a version number (``3``), a tag (``prod``) or a digest (``sha256:…``, or a 12+ hex
prefix after ``@``); a form's ref may also be ``#3`` or a full ref of the same repository.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Query, Request, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from registry.api.caching import immutable
from registry.api.deps import ReadSession, RegistryDep, WriteSession
from registry.api.streaming import blob_response
from registry.errors import InvalidInput, NotFound
from registry.principal import Principal
from registry.refs import DEFAULT_TAG, Ref, RepoName, RepoRef
from registry.services import labels, repos, tags, versions
from registry.services import yank as yanking
from registry.services.lineage import Node
from registry.services.repo_pages import RepositoryPage, repository_page, version_page
from registry.ui.lineage_svg import draw
from registry.ui.pages import Form, Viewer, field, page_router, redirect, render

router = page_router()
STYLESHEETS = ["repo.css"]


def form_ref(value: str, repo: RepoName) -> Ref:
    """A ref typed in a form: a bare number, or any ref of ``repo`` (:meth:`Ref.parse_in`)."""
    return Ref.parse_short(value) if value.isdigit() else Ref.parse_in(value, repo)


def _repo(namespace: str, name: str) -> RepoName:
    return RepoName.parse(f"{namespace}/{name}")


def _lineage_href(node: Node) -> str:
    return f"/{node.repo}/v/{node.number}"


def _snippet_refs(page: RepositoryPage) -> dict[str, str] | None:
    """How the snippets name the latest version: by its ``latest`` tag, else by its number (the Hub API
    by its 40-hex sha); None without one."""
    latest, repo = page.latest, page.repository.full_name
    if latest is None:
        return None
    if any(tag.name == DEFAULT_TAG for tag in page.tags):
        return {"ref": f"{repo}:{DEFAULT_TAG}", "revision": DEFAULT_TAG}
    return {"ref": f"{repo}#{latest.number}", "revision": latest.digest[:40]}


def _link(value: Any) -> str | None:
    """``value`` when it is an http(s) URL, the only kind a page makes a link of."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def _provenance(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """The provenance as rows: key, value, and a link (a job's page, or an http(s) URL)."""
    rows = []
    for key, value in provenance.items():
        href = f"/jobs/{value}" if key == "job" and isinstance(value, str) else _link(value)
        rows.append({"key": key, "value": value, "href": href, "text": isinstance(value, str)})
    return rows


@router.get("/{namespace}/{name}")
def repository(
    namespace: str,
    name: str,
    request: Request,
    session: ReadSession,
    viewer: Viewer,
    page: Annotated[str, Query(max_length=12)] = "1",
) -> Response:
    """The repository: its latest version's card and files, tags with their moves, versions a page at a
    time, the lineage graph, how to pull it, and the writer's forms."""
    repo = _repo(namespace, name)
    if not page.isdigit():
        raise InvalidInput(f"invalid page {page!r}: pages are numbered from 1")
    found = repository_page(session, repo, viewer, page=int(page))
    context = {
        "repo": str(repo),
        "page": found,
        "lineage_svg": draw(found.lineage, _lineage_href),
        "refs": _snippet_refs(found),
        "server": str(request.base_url).rstrip("/"),
        "stylesheets": STYLESHEETS,
    }
    return render(request, "repo/repository.html", context)


@router.get("/{namespace}/{name}/v/{ref}")
def version(
    namespace: str, name: str, ref: str, request: Request, session: ReadSession, viewer: Viewer
) -> Response:
    """One version (yanked ones too): config, base and compatibility, provenance, labels, metrics, card,
    files, parents."""
    repo = _repo(namespace, name)
    found = version_page(session, RepoRef(repo, Ref.parse_short(ref)), viewer)
    context = {
        "repo": str(repo),
        "page": found,
        "provenance": _provenance(found.version.provenance),
        "stylesheets": STYLESHEETS,
    }
    return render(request, "repo/version.html", context)


@router.get("/{namespace}/{name}/v/{ref}/files/{path:path}")
async def file(
    namespace: str, name: str, ref: str, path: str, request: Request, registry: RegistryDep, viewer: Viewer
) -> Response:
    """A file's bytes, as a download: resolved as a pull resolves it (a yanked version only by digest)."""
    target = RepoRef(_repo(namespace, name), Ref.parse_short(ref))
    resolved = await versions.resolve(registry.lookups, target, viewer)
    entry = next((f for f in resolved.files if f["path"] == path), None)
    if entry is None:
        raise NotFound(f"{resolved.repo}#{resolved.number} has no file {path!r}")
    headers = {
        "Content-Disposition": f'attachment; filename="{path.rsplit("/", 1)[-1]}"',
        "ETag": f'"{entry["digest"]}"',
        "Cache-Control": immutable(viewer, resolved.visibility)
        if target.ref.kind == "digest"
        else "no-cache",
    }
    return blob_response(request, registry.store, registry.settings, entry["digest"], entry["size"], headers)


# The writers' forms -------------------------------------------------------------------------------


@router.post("/{namespace}/{name}/tags")
def move_tag(namespace: str, name: str, session: WriteSession, viewer: Viewer, form: Form) -> Response:
    """Point ``tag`` at ``ref``, only if it still points at ``expect`` (empty: only if it does not exist
    yet), as ``lorareg tag --expect`` does; ``allow_yanked`` lets it onto a yanked version."""
    repo = _repo(namespace, name)
    tag, target = field(form, "tag"), field(form, "ref")
    if tag is None or target is None:
        raise InvalidInput("give the tag and the version to point it at (a number, a tag or a digest)")
    expect = field(form, "expect")
    expected: Ref | None = form_ref(expect, repo) if expect is not None else None
    tags.move_tag(
        session,
        repo,
        tag,
        form_ref(target, repo),
        expected=expected,
        principal=viewer,
        allow_yanked=field(form, "allow_yanked") is not None,
    )
    return redirect(f"/{repo}#tags")


@router.post("/{namespace}/{name}/description")
def describe(namespace: str, name: str, session: WriteSession, viewer: Viewer, form: Form) -> Response:
    """Set the one-line description (empty clears it)."""
    repo = _repo(namespace, name)
    repos.describe(session, repo, field(form, "description"), viewer)
    return redirect(f"/{repo}")


@router.post("/{namespace}/{name}/labels")
def label_repository(
    namespace: str, name: str, session: WriteSession, viewer: Viewer, form: Form
) -> Response:
    """Set ``key``=``value`` on the repository, or remove the label ``remove``."""
    repo = _repo(namespace, name)
    _change_labels(session, repo, None, form, viewer)
    return redirect(f"/{repo}#labels")


@router.post("/{namespace}/{name}/v/{ref}/labels")
def label_version(
    namespace: str, name: str, ref: str, session: WriteSession, viewer: Viewer, form: Form
) -> Response:
    """Set ``key``=``value`` on the version, or remove the label ``remove``."""
    repo = _repo(namespace, name)
    _change_labels(session, repo, Ref.parse_short(ref), form, viewer)
    return redirect(f"/{repo}/v/{ref}#labels")


def _change_labels(
    session: Session, repo: RepoName, ref: Ref | None, form: FormData, viewer: Principal
) -> None:
    key, remove = field(form, "key"), field(form, "remove")
    if key is None and remove is None:
        raise InvalidInput("give a label's key (and its value) to set it, or the key to remove")
    change = {key: field(form, "value") or ""} if key is not None else {}
    labels.set_labels(session, repo, change, viewer, ref=ref, remove=[remove] if remove is not None else [])


@router.post("/{namespace}/{name}/v/{ref}/yank")
def yank_version(
    namespace: str, name: str, ref: str, session: WriteSession, viewer: Viewer, form: Form
) -> Response:
    """Yank the version, with ``reason``: tags and numbers no longer resolve to it; its digest does."""
    target = RepoRef(_repo(namespace, name), Ref.parse_short(ref))
    result = yanking.yank(session, target, reason=field(form, "reason"), principal=viewer)
    return redirect(f"/{target.repo}/v/{result.version.number}")


@router.post("/{namespace}/{name}/v/{ref}/unyank")
def unyank_version(
    namespace: str, name: str, ref: str, session: WriteSession, viewer: Viewer, form: Form
) -> Response:
    """Make the yanked version resolve again."""
    target = RepoRef(_repo(namespace, name), Ref.parse_short(ref))
    result = yanking.unyank(session, target, principal=viewer)
    return redirect(f"/{target.repo}/v/{result.version.number}")
