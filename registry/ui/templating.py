"""The pages' templates (Jinja2, autoescaped) and the filters they share: Markdown as sanitized HTML,
digests, sizes and times written for people."""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_PREFIX = "/-/static"

# CommonMark with tables; raw HTML is escaped, not passed through, and links with a javascript:, vbscript:,
# file: or data: (but images) target are not made (markdown-it's validateLink): a card cannot inject markup.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown(text: str | None) -> Markup:
    """``text`` (Markdown) as HTML safe to put in a page."""
    return Markup(_markdown.render(text or ""))  # html disabled: the renderer escapes the text


def short_digest(digest: str | None, length: int = 12) -> str:
    """``sha256:…`` or bare hex, as its first ``length`` hex digits."""
    if not digest:
        return ""
    return digest.removeprefix("sha256:")[:length]


def size(count: int | None) -> str:
    """Bytes as people read them: ``12.3 MB``."""
    if count is None:
        return ""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago: ``3 min ago``, ``2 days ago`` (the exact time goes in a ``title``)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    for unit, length in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return "just now"


def timestamp(moment: datetime | None) -> str:
    """An exact UTC time: ``2026-12-02 05:00:00 UTC``."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@functools.cache
def asset(path: str) -> str:
    """The URL of a static file, with its content's hash (so a new release is fetched anew)."""
    digest = hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:12]
    return f"{STATIC_PREFIX}/{path}?v={digest}"


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    environment = templates.env
    environment.filters.update(markdown=markdown, short=short_digest, size=size, ago=ago, timestamp=timestamp)
    environment.globals["asset"] = asset
    environment.trim_blocks = environment.lstrip_blocks = True
    return templates


templates = _templates()
