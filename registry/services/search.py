"""Search: the repositories a caller may read, by the words of their names, descriptions and model cards,
and by AND-ed filters on their latest version (the one ``latest`` points at; without that tag, the newest
unyanked one): namespace, base, license, labels (of the repository or of that version), metrics.

Words match as prefixes of the text's words (letters and digits; ``llam`` finds ``llama``), all of them.

The API caches its answers (:func:`cached_search`) under the ``search`` generation, read before each
search: any committed change search can see makes every cached answer stale, in every process.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from registry.db import generations, queries
from registry.db.lookups import Lookups
from registry.db.models import as_utc
from registry.db.queries.search import MetricBound, PreparedSearch, Sort
from registry.errors import InvalidInput
from registry.principal import Principal
from registry.refs import validate_name
from registry.services.bases import get_base
from registry.services.labels import validate_key, validate_value
from registry.services.pages import Page, check_limit

WORD = re.compile(r"[^\W_]+")  # what both full-text indexes take as a word
MAX_WORDS = 16
MAX_FILTERS = 16  # labels, and metrics
MAX_METRIC_NAME = 513
SORTS = "updated, name or metric:NAME"
_LABEL = re.compile(r"^([^:=]*)[:=](.*)$", re.DOTALL)
_METRIC = re.compile(r"^(?P<name>[^<>=]+?)\s*(?P<op>>=|<=|>|<|=)\s*(?P<value>[^<>=]+)$")


@dataclass(frozen=True)
class Latest:
    """A result's latest version."""

    number: int
    digest: str
    base_name: str
    base_sha: str
    base_content_digest: str
    created_at: datetime
    yanked: bool
    tags: list[str]
    labels: dict[str, str]
    metrics: dict[str, float]  # by name; the ``eval`` result where the card has one too


@dataclass(frozen=True)
class Hit:
    repo: str
    visibility: str
    description: str | None
    updated_at: datetime
    license: str | None
    labels: dict[str, str]  # the repository's own
    latest: Latest | None  # None: the repository has no version to show


def parse_label(text: str) -> tuple[str, str]:
    """``key:value`` (or ``key=value``, as ``lorareg label`` writes it): a key has neither character."""
    found = _LABEL.match(text)
    if found is None:
        raise InvalidInput(f"label filter {text!r} is not key:value (e.g. validation:approved)")
    key, value = found.groups()
    return validate_key(key), validate_value(key, value)


def parse_metric(text: str) -> MetricBound:
    """``NAME>=X`` (operators >=, >, <=, <, =), NAME as ``lorareg show`` lists the metrics."""
    found = _METRIC.match(text.strip())
    value = _number(found["value"]) if found else None
    if found is None or value is None:
        raise InvalidInput(
            f"metric filter {text!r} is not NAME OP NUMBER with OP one of >=, >, <=, <, = "
            "(e.g. 'gsm8k/exact_match>=0.6')"
        )
    return MetricBound(_metric_name(found["name"]), found["op"], value)


def parse_sort(text: str) -> Sort:
    if text in ("updated", "name"):
        return Sort(text)
    kind, _, name = text.partition(":")
    if kind != "metric" or not name:
        raise InvalidInput(f"unknown sort {text!r}: {SORTS}")
    return Sort("metric", _metric_name(name))


@dataclass(frozen=True)
class _Request:
    """A search's validated arguments, for ``queries.search`` (``base``: still to look up)."""

    arguments: dict[str, Any]
    base: str | None
    sort: str
    limit: int


@dataclass(frozen=True)
class SearchQuery:
    """What a search asks for: the words of ``q`` and the filters, AND-ed (see :func:`search`)."""

    q: str | None = None
    namespace: str | None = None
    base: str | None = None
    license: str | None = None
    labels: Sequence[str] = ()
    metrics: Sequence[str] = ()
    sort: str = "updated"
    limit: int = 20
    cursor: str | None = None


def search(session: Session, principal: Principal, query: SearchQuery) -> Page[Hit]:
    """One page of what ``principal`` may read that matches ``query.q`` and every filter, in ``query.sort``
    order (``updated``: the newest change first; ``name``; ``metric:NAME``: the highest first, only results
    whose latest version has NAME). ``query.cursor`` continues a previous page. One statement (one more to
    count the filters' rows, unless counted lately; one more for ``base``); the API uses
    :func:`search_lookup`."""
    request = _request(principal, query)
    base_id = get_base(session, request.base).id if request.base is not None else None
    connection = session.connection()
    prepared = _prepare(connection.engine, request, base_id)
    counted = connection.execute(*prepared.counting).one() if prepared.counting is not None else None
    return _page(request, connection.execute(*prepared.statement(counted)).all())


async def search_lookup(lookups: Lookups, principal: Principal, query: SearchQuery) -> Page[Hit]:
    """:func:`search` as lookups (see :mod:`registry.db.lookups`), on the event loop."""
    return await _found(lookups, _request(principal, query))


Answer = TypeVar("Answer")


class AnswerCache(Generic[Answer]):
    """The latest ``entries`` answers (none: 0), each under the ``search`` generation read before it was
    found: one is given again only while that generation is current. ``on_lookup(hit)`` hears of each
    lookup."""

    def __init__(self, entries: int, on_lookup: Callable[[bool], None] | None = None) -> None:
        self.entries = entries
        self._on_lookup = on_lookup
        self._answers: OrderedDict[Hashable, tuple[int, Answer]] = OrderedDict()

    def get(self, key: Hashable, generation: int) -> Answer | None:
        found = self._answers.get(key)
        hit = found is not None and found[0] == generation
        if self._on_lookup is not None:
            self._on_lookup(hit)
        if found is None or not hit:
            return None
        self._answers.move_to_end(key)
        return found[1]

    def put(self, key: Hashable, generation: int, answer: Answer) -> None:
        self._answers[key] = (generation, answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self.entries:
            self._answers.popitem(last=False)


_SEARCH_GENERATION = generations.value_of(generations.SEARCH)
CACHED_LIMIT = 100  # larger pages are found afresh: a cache entry stays under ~60 KB


async def cached_search(
    lookups: Lookups,
    principal: Principal,
    query: SearchQuery,
    cache: AnswerCache[Answer],
    render: Callable[[Page[Hit]], Answer],
) -> Answer:
    """``render`` of :func:`search_lookup`'s page, from ``cache`` (one lookup: the generation) when it holds
    this search, for this caller's namespaces, found since the last committed change search can see (pages
    of at most :data:`CACHED_LIMIT` results)."""
    request = _request(principal, query)
    if request.limit > CACHED_LIMIT or cache.entries <= 0:
        return render(await _found(lookups, request))
    key = (request.base, *((name, _hashable(value)) for name, value in request.arguments.items()))
    (generation,) = (await lookups.rows(_SEARCH_GENERATION, {}))[0]
    if (cached := cache.get(key, generation)) is not None:
        return cached
    answer = render(await _found(lookups, request))
    cache.put(key, generation, answer)
    return answer


async def _found(lookups: Lookups, request: _Request) -> Page[Hit]:
    base_id = None
    if (spec := request.base) is not None:
        base_id = await lookups.run(lambda connection: get_base(Session(connection), spec).id)
    prepared = _prepare(lookups.engine, request, base_id)
    counted = (await lookups.rows(*prepared.counting))[0] if prepared.counting is not None else None
    return _page(request, await lookups.rows(*prepared.statement(counted)))


def _hashable(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


def _request(principal: Principal, query: SearchQuery) -> _Request:
    words = [word.lower() for word in WORD.findall(query.q or "")]
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"q has {len(words)} words; search takes at most {MAX_WORDS}")
    if len(query.labels) > MAX_FILTERS or len(query.metrics) > MAX_FILTERS:
        raise InvalidInput(f"at most {MAX_FILTERS} label filters and {MAX_FILTERS} metric filters")
    namespace, license, cursor = query.namespace, query.license, query.cursor
    arguments = {
        "readable_in": principal.readable_namespaces,
        "words": words,
        "namespace": validate_name(namespace, "namespace") if namespace is not None else None,
        "license": license.lower() if license is not None else None,
        "labels": [parse_label(label) for label in query.labels],
        "metrics": [parse_metric(metric) for metric in query.metrics],
        "sort": parse_sort(query.sort),
        "after": _after(cursor, query.sort) if cursor is not None else None,
        "limit": check_limit(query.limit) + 1,
    }
    return _Request(arguments, query.base, query.sort, query.limit)


def _prepare(engine: Engine, request: _Request, base_id: int | None) -> PreparedSearch:
    return queries.search(engine.dialect.name, engine.url, base_id=base_id, **request.arguments)


def _page(request: _Request, rows: Sequence[Any]) -> Page[Hit]:
    shown = rows[: request.limit]
    next_cursor = _cursor(request.sort, shown[-1]) if len(rows) > request.limit else None
    return Page(_hits(shown), next_cursor)


def _hits(rows: Sequence[Any]) -> list[Hit]:
    """The page's rows, with the tags, labels and metrics they carry as JSON."""
    return [_hit(row, *_json(row.shown)) for row in rows]


def _hit(
    row: Any,
    tags: list[str],
    repository_labels: dict[str, str],
    version_labels: dict[str, str],
    metrics: dict[str, float],
) -> Hit:
    return Hit(
        repo=f"{row.namespace}/{row.name}",
        visibility=row.visibility,
        description=row.description,
        updated_at=as_utc(row.updated_at),
        license=row.license,
        labels=repository_labels,
        latest=None
        if row.version_id is None
        else Latest(
            number=row.number,
            digest=row.digest,
            base_name=row.base_name,
            base_sha=row.base_sha,
            base_content_digest=row.base_content_digest,
            created_at=as_utc(row.version_created_at),
            yanked=row.yanked_at is not None,
            tags=tags,
            labels=version_labels,
            metrics={name: float(value) for name, value in metrics.items()},  # PostgreSQL's 1 is 1.0
        ),
    )


def _json(value: Any) -> Any:
    """A JSON column: text on SQLite, already decoded by psycopg."""
    return json.loads(value) if isinstance(value, str) else value


def _cursor(sort: str, row: Any) -> str:
    """The next page's cursor: the sort and the last row's key, opaque to clients."""
    first = row.key_0.isoformat() if isinstance(row.key_0, datetime) else row.key_0
    return base64.urlsafe_b64encode(json.dumps([sort, first, row.key_1]).encode()).decode()


def _after(cursor: str, sort: str) -> tuple[Any, Any]:
    invalid = InvalidInput(f"invalid cursor {cursor!r}: pass the one a previous page of this search returned")
    try:
        given, first, second = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise invalid from None
    if given != sort:
        raise invalid
    try:
        if sort == "updated":
            return datetime.fromisoformat(first), int(second)
        if sort == "name":
            return str(first), str(second)
        return float(first), int(second)
    except (ValueError, TypeError):
        raise invalid from None


def _metric_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_METRIC_NAME or not name.isprintable():
        raise InvalidInput(
            f"invalid metric name {name!r}: task/metric or metric as `lorareg show` lists them, at most "
            f"{MAX_METRIC_NAME} characters"
        )
    return name


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
