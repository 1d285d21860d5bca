"""Queries of search: writing the search documents (one per repository) and searching them with the
database's own full-text index (migration 0010): FTS5 on SQLite, a GIN-indexed tsvector on PostgreSQL.

Every filter is one an index answers: the text by the full-text index, labels by ``(key, value)``, metrics
by ``(name, value)``, base and license by the documents' own indexes, in the order of the sort."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    String,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    table,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from registry.db.models import (
    SEARCH_FTS_TABLE,
    SEARCH_VECTOR,
    BaseModel,
    EvalMetric,
    Repository,
    RepositoryLabel,
    SearchDocument,
    Tag,
    Version,
    VersionCard,
    VersionLabel,
)
from registry.db.queries._dialect import insert_for
from registry.db.queries.repos import readable
from registry.refs import DEFAULT_TAG

MAX_TEXT = 65536  # characters of a document matched (a card beyond them is not searched)
# The strings of a card's metadata (license, tags, datasets, model-index names, …), space-separated.
_CARD_STRINGS = {
    "sqlite": "(SELECT group_concat(value, ' ') FROM json_tree(version_cards.card_data) WHERE type = 'text')",
    "postgresql": "(SELECT string_agg(j #>> '{}', ' ') FROM jsonb_path_query("
    "CAST(version_cards.card_data AS JSONB), 'strict $.**') AS j WHERE jsonb_typeof(j) = 'string')",
}
_FTS = table(SEARCH_FTS_TABLE, literal_column("rowid"))


@dataclass(frozen=True)
class MetricBound:
    """``name op value``: the latest version's metric ``name`` compared with ``op`` (>=, >, <=, <, =)."""

    name: str
    op: str
    value: float


@dataclass(frozen=True)
class Sort:
    """``updated`` (newest change first), ``name`` (by namespace and name) or a metric (highest first)."""

    by: str  # "updated", "name" or "metric"
    metric: str | None = None


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# Documents -----------------------------------------------------------------------------------------


def _latest_version_id() -> ColumnElement[Any]:
    """The repository's latest version: the one ``latest`` points at, else the newest unyanked one."""
    tagged = select(Tag.version_id).where(Tag.repository_id == Repository.id, Tag.name == DEFAULT_TAG)
    newest = (
        select(Version.id)
        .where(Version.repository_id == Repository.id, Version.yanked_at.is_(None))
        .order_by(Version.number.desc())
        .limit(1)
    )
    return func.coalesce(tagged.scalar_subquery(), newest.scalar_subquery())


def _documents(dialect: str, repository_id: int | None, updated_at: datetime | None) -> Select[Any]:
    """The documents of one repository (or of all): the columns of ``search_documents``, in order.
    ``updated_at`` None: the time of the latest version (or of the repository), for a rebuild."""
    chosen = select(Repository.id.label("repository_id"), _latest_version_id().label("version_id"))
    if repository_id is not None:
        chosen = chosen.where(Repository.id == repository_id)
    latest = chosen.subquery("latest")
    text = (
        Repository.namespace
        + " "
        + Repository.name
        + " "
        + func.coalesce(Repository.description, "")
        + " "
        + func.coalesce(literal_column(_CARD_STRINGS[dialect]), "")
        + " "
        + func.coalesce(VersionCard.markdown, "")
    )
    return (
        select(
            latest.c.repository_id,
            latest.c.version_id,
            Version.base_id,
            func.lower(VersionCard.card_data["license"].as_string()),
            literal(updated_at, SearchDocument.updated_at.type)
            if updated_at
            else func.coalesce(Version.created_at, Repository.created_at),
            func.substr(text, 1, MAX_TEXT),
        )
        .select_from(latest)
        .join(Repository, Repository.id == latest.c.repository_id)
        .outerjoin(Version, Version.id == latest.c.version_id)
        .outerjoin(VersionCard, VersionCard.version_id == latest.c.version_id)
        .where(true())  # SQLite: an INSERT … SELECT with ON CONFLICT needs a WHERE (its grammar)
    )


_COLUMNS = ["repository_id", "latest_version_id", "base_id", "license", "updated_at", "text"]


def write_document(session: Session, repository_id: int, *, updated_at: datetime) -> None:
    """Write (or rewrite) one repository's document, changed at ``updated_at``."""
    statement = insert_for(session, SearchDocument).from_select(
        _COLUMNS, _documents(_dialect(session), repository_id, updated_at)
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["repository_id"],
            set_={column: statement.excluded[column] for column in _COLUMNS[1:]},
        )
    )


def write_all_documents(session: Session) -> int:
    """Rewrite every document in one statement; how many there are."""
    session.execute(delete(SearchDocument))
    session.execute(insert(SearchDocument).from_select(_COLUMNS, _documents(_dialect(session), None, None)))
    return session.scalar(select(func.count()).select_from(SearchDocument)) or 0


# Search --------------------------------------------------------------------------------------------


# Whether a filter drives a search (the rows it selects are read first, then sorted) or is checked row by
# row while the search walks its sort's index is decided here, from how many rows each indexed filter
# selects (counted up to CAP): the cheaper of reading the rarest filter's rows and walking until a page is
# found, were the filters independent. Neither planner gets that right by itself: SQLite's knows no
# selectivities, PostgreSQL's prices a walk that stops at a page as one that reads every row (it does
# estimate full-text matches well, from its statistics: those are not counted on PostgreSQL).
CAP = 10_000
# The counts are kept a while, per database and filter: they choose a plan only (every plan finds the same
# rows), so one at most COUNTS_FRESH seconds old costs at worst a slower plan, never a different result.
COUNTS_FRESH = 60.0
MAX_COUNTED = 10_000
_counted: dict[tuple[Any, ...], tuple[float, int]] = {}


def _fts_hits() -> Select[Any]:
    return select(_FTS.c.rowid).where(literal_column(SEARCH_FTS_TABLE).op("MATCH")(bindparam("words")))


def _matches(dialect: str, drives: bool) -> ColumnElement[bool]:
    """Documents matching the full-text query ``:words`` (see :func:`_full_text_query`)."""
    if dialect == "sqlite":  # ``+ 0``: the matches are looked up row by row, not read first
        document = SearchDocument.repository_id if drives else SearchDocument.repository_id + 0
        return document.in_(_fts_hits())
    vector: ColumnElement[Any] = literal_column(f"{SearchDocument.__tablename__}.{SEARCH_VECTOR}")
    return vector.op("@@")(func.to_tsquery(literal_column("'simple'::regconfig"), bindparam("words")))


def _full_text_query(dialect: str, words: Sequence[str]) -> str:
    """Every word as the prefix of a word of the text (``words``: letters and digits only)."""
    if dialect == "sqlite":
        return " AND ".join(f'"{word}"*' for word in words)
    return " & ".join(f"{word}:*" for word in words)


def _counts_for_its_version(metric: Any) -> ColumnElement[bool]:
    """``metric`` counts for its version and name: it is not a card's result where an attached (``eval``)
    one wins. Checked row by row through the unique index (``OFFSET 0`` keeps PostgreSQL from hashing the
    whole table for it, which a search that stops at a page does not need)."""
    attached = aliased(EvalMetric)
    shadowing = select(attached.id).where(
        metric.source == "card",
        attached.version_id == metric.version_id,
        attached.source == "eval",
        attached.name == metric.name,
    )
    return ~shadowing.offset(0).exists()


def _label(i: int) -> tuple[Any, Any]:
    return bindparam(f"label_key_{i}"), bindparam(f"label_value_{i}")


def _labelled(i: int, drives: bool) -> ColumnElement[bool]:
    """The repository, or its latest version, has the label ``:label_key_i=:label_value_i``."""
    key, value = _label(i)
    if not drives:
        return or_(
            select(RepositoryLabel.key)
            .where(RepositoryLabel.repository_id == SearchDocument.repository_id)
            .where(RepositoryLabel.key == key, RepositoryLabel.value == value)
            .offset(0)  # row by row (see _counts_for_its_version)
            .exists(),
            select(VersionLabel.key)
            .where(VersionLabel.version_id == SearchDocument.latest_version_id)
            .where(VersionLabel.key == key, VersionLabel.value == value)
            .offset(0)
            .exists(),
        )
    on_version = aliased(SearchDocument)
    repositories = select(RepositoryLabel.repository_id).where(
        RepositoryLabel.key == key, RepositoryLabel.value == value
    )
    versions = (
        select(on_version.repository_id)
        .join(VersionLabel, VersionLabel.version_id == on_version.latest_version_id)
        .where(VersionLabel.key == key, VersionLabel.value == value)
    )
    return SearchDocument.repository_id.in_(union_all(repositories, versions))


def _bound(i: int, op: str, metric: Any, *, indexed: bool = True) -> ColumnElement[bool]:
    """``metric`` is ``:metric_name_i`` and compares with ``op`` to ``:metric_value_i`` (not through the
    (name, value) index unless ``indexed``)."""
    value = bindparam(f"metric_value_{i}", type_=EvalMetric.value.type)
    compare = {
        ">=": metric.value >= value,
        ">": metric.value > value,
        "<=": metric.value <= value,
        "<": metric.value < value,
        "=": metric.value == value,
    }[op]
    name = metric.name if indexed else metric.name.concat("")
    return and_(name == bindparam(f"metric_name_{i}"), compare)


def _bounded(i: int, op: str, drives: bool) -> ColumnElement[bool]:
    """The latest version's metric ``:metric_name_i`` compares with ``op`` to ``:metric_value_i``."""
    metric = aliased(EvalMetric)
    versions = select(metric.version_id).where(
        _bound(i, op, metric, indexed=drives), _counts_for_its_version(metric)
    )
    if drives:
        return SearchDocument.latest_version_id.in_(versions)
    return versions.where(metric.version_id == SearchDocument.latest_version_id).offset(0).exists()


@dataclass(frozen=True)
class _Shape:
    """Which filters a search has, and which of them drive it: its statement is built once per shape
    (and compiled once, then)."""

    restricted: bool  # readable by some namespaces only
    namespace: bool
    base: bool
    license: bool
    metric_ops: tuple[str, ...]
    sort: str
    after: bool
    words: bool | None = None  # None: no words; True: the matches drive
    labels: tuple[bool, ...] = ()  # whether each drives
    metrics: tuple[bool, ...] = ()


Statement = tuple[Select[Any], dict[str, Any]]  # a prebuilt SELECT and its parameters


@dataclass(frozen=True)
class PreparedSearch:
    """A search's statement, once the selectivities of its filters are known: ``counting`` (None: all
    known) answers one row of the missing ones for :meth:`statement`."""

    dialect: str
    shape: _Shape
    parameters: dict[str, Any]
    keys: tuple[tuple[Any, ...], ...]  # the counts that choose the plan: the total, then each filter's
    known: dict[tuple[Any, ...], int]
    counting: Statement | None

    def statement(self, counted: Sequence[int] | None = None) -> Statement:
        """The search (rows with ``key_0``, ``key_1`` and the columns of a result: see ``details``),
        given ``counting``'s row."""
        counts = dict(self.known)
        if self.counting is not None:
            assert counted is not None
            missing = [key for key in self.keys if key not in self.known]
            now = time.monotonic()
            if len(_counted) + len(missing) > MAX_COUNTED:
                _counted.clear()
            for key, count in zip(missing, counted, strict=True):
                counts[key] = count
                _counted[key] = (now, count)
        shape = self.shape
        drives: list[bool] = []
        if self.keys:
            total, *filters = (counts[key] for key in self.keys)
            drives = _driving(filters, total, self.parameters["limit"])
        labels = sum(1 for name in self.parameters if name.startswith("label_key_"))
        if self._words:
            shape = replace(shape, words=drives.pop(0) if self._counted_words else True)
        shape = replace(shape, labels=tuple(drives[:labels]), metrics=tuple(drives[labels:]))
        return _statement(self.dialect, shape), self.parameters

    @property
    def _words(self) -> bool:
        return bool(self.parameters["words"])

    @property
    def _counted_words(self) -> bool:
        return self._words and self.dialect == "sqlite"


def search(
    dialect: str,
    database: Any,
    *,
    readable_in: tuple[str, ...] | None,
    words: Sequence[str] = (),
    namespace: str | None = None,
    base_id: int | None = None,
    license: str | None = None,
    labels: Sequence[tuple[str, str]] = (),
    metrics: Sequence[MetricBound] = (),
    sort: Sort,
    after: tuple[Any, Any] | None = None,
    limit: int,
) -> PreparedSearch:
    """The documents that pass every filter, readable by ``readable_in`` (see ``readable``), in ``sort``
    order after the cursor ``after`` (the last row's ``key_0``, ``key_1``), one page of them with what a
    result shows; ``database`` (its URL) keys the counts kept."""
    shape = _Shape(
        restricted=readable_in is not None,
        namespace=namespace is not None,
        base=base_id is not None,
        license=license is not None,
        metric_ops=tuple(bound.op for bound in metrics),
        sort=sort.by,
        after=after is not None,
    )
    parameters: dict[str, Any] = {
        "namespaces": list(readable_in) if readable_in is not None else None,
        "words": _full_text_query(dialect, words),
        "namespace": namespace,
        "base_id": base_id,
        "license": license,
        "sort_metric": sort.metric,
        "limit": limit,
        "cap": CAP,
    }
    for i, (key, value) in enumerate(labels):
        parameters |= {f"label_key_{i}": key, f"label_value_{i}": value}
    for i, bound in enumerate(metrics):
        parameters |= {f"metric_name_{i}": bound.name, f"metric_value_{i}": bound.value}
    if after is not None:
        parameters |= {"after_0": after[0], "after_1": after[1]}
    counted_words = bool(words) and dialect == "sqlite"  # PostgreSQL estimates its own, from its statistics
    keys: list[tuple[Any, ...]] = []
    if counted_words or labels or metrics:
        keys.append((database, "total"))
        if counted_words:
            keys.append((database, "words", parameters["words"]))
        keys += [(database, "label", key, value) for key, value in labels]
        keys += [(database, "metric", bound.name, bound.op, bound.value) for bound in metrics]
    fresh = time.monotonic() - COUNTS_FRESH
    known = {key: found[1] for key in keys if (found := _counted.get(key)) is not None and found[0] > fresh}
    counting: Statement | None = None
    if len(known) < len(keys):
        counting = _counting(keys, known, parameters)
    return PreparedSearch(dialect, shape, parameters, tuple(keys), known, counting)


def _counting(
    keys: Sequence[tuple[Any, ...]], known: dict[tuple[Any, ...], int], parameters: dict[str, Any]
) -> Statement:
    """The statement counting the filters not in ``known``, with their parameters renumbered."""
    missing = [key for key in keys if key not in known]
    words = any(key[1] == "words" for key in missing)
    counted: dict[str, Any] = {"words": parameters["words"], "cap": CAP}
    labels = [key for key in missing if key[1] == "label"]
    metrics = [key for key in missing if key[1] == "metric"]
    for i, (_, _, key, value) in enumerate(labels):
        counted |= {f"label_key_{i}": key, f"label_value_{i}": value}
    for i, (_, _, name, _, value) in enumerate(metrics):
        counted |= {f"metric_name_{i}": name, f"metric_value_{i}": value}
    total = any(key[1] == "total" for key in missing)
    return _counts(total, words, len(labels), tuple(key[3] for key in metrics)), counted


def _driving(counts: Sequence[int], total: int, limit: int) -> list[bool]:
    """Which filter drives (at most one), from the rows each selects (see CAP)."""
    walked = limit / math.prod(max(count, 1) / max(total, 1) for count in counts)
    rarest = min(range(len(counts)), key=counts.__getitem__)
    return [i == rarest and counts[i] < min(CAP, walked) for i in range(len(counts))]


@functools.cache
def _counts(total: bool, words: bool, labels: int, metric_ops: tuple[str, ...]) -> Select[Any]:
    """About how many documents there are (when ``total``), and how many rows each indexed filter selects,
    up to ``:cap`` (upper bounds: versions that are not the latest count too)."""

    def counted(query: Select[Any]) -> Any:
        return select(func.count()).select_from(query.limit(bindparam("cap")).subquery()).scalar_subquery()

    counts: list[Any] = [select(func.max(SearchDocument.repository_id)).scalar_subquery()] if total else []
    if words:
        counts.append(counted(_fts_hits()))
    for i in range(labels):
        key, value = _label(i)
        on_repositories = select(RepositoryLabel.key).where(
            RepositoryLabel.key == key, RepositoryLabel.value == value
        )
        on_versions = select(VersionLabel.key).where(VersionLabel.key == key, VersionLabel.value == value)
        counts.append(counted(on_repositories) + counted(on_versions))
    counts += [
        counted(select(EvalMetric.id).where(_bound(i, op, EvalMetric))) for i, op in enumerate(metric_ops)
    ]
    return select(*counts)


def _readable(dialect: str, restricted: bool) -> ColumnElement[bool]:
    """``readable()`` with the namespaces bound at execution: an expanding IN on SQLite, ``= ANY`` of an
    array on PostgreSQL (which psycopg takes as it is)."""
    if not restricted:
        return readable(None)
    if dialect == "sqlite":
        return readable(typed(tuple[str, ...], bindparam("namespaces", expanding=True)))
    namespaces = bindparam("namespaces", type_=ARRAY(String()))
    return or_(Repository.visibility == "public", Repository.namespace == any_(namespaces))


@functools.cache
def _statement(dialect: str, shape: _Shape) -> Select[Any]:
    latest = aliased(Version)
    conditions: list[ColumnElement[bool]] = [_readable(dialect, shape.restricted)]
    if shape.words is not None:
        conditions.append(_matches(dialect, shape.words))
    if shape.namespace:
        conditions.append(Repository.namespace == bindparam("namespace"))
    if shape.base:
        conditions.append(SearchDocument.base_id == bindparam("base_id"))
    if shape.license:
        conditions.append(SearchDocument.license == bindparam("license"))
    conditions += [_labelled(i, drives) for i, drives in enumerate(shape.labels)]
    conditions += [
        _bounded(i, op, drives)
        for i, (op, drives) in enumerate(zip(shape.metric_ops, shape.metrics, strict=True))
    ]
    key: tuple[Any, ...]
    if shape.sort == "metric":
        key = (EvalMetric.value, EvalMetric.id)
        query = (
            select(*details(dialect, latest))
            .select_from(EvalMetric)
            .join(SearchDocument, SearchDocument.latest_version_id == EvalMetric.version_id)
        )
        # On SQLite, a driving filter's rows are read first: not walking the metric's (name, value) index.
        driven = dialect == "sqlite" and any((shape.words, *shape.labels, *shape.metrics))
        name = EvalMetric.name.concat("") if driven else EvalMetric.name
        conditions += [name == bindparam("sort_metric"), _counts_for_its_version(EvalMetric)]
    else:
        query = select(*details(dialect, latest)).select_from(SearchDocument)
        key = (
            (Repository.namespace, Repository.name)
            if shape.sort == "name"
            else (SearchDocument.updated_at, SearchDocument.repository_id)
        )
    ascending = shape.sort == "name"
    if shape.after:
        last = tuple_(*(bindparam(f"after_{i}", type_=column.type) for i, column in enumerate(key)))
        conditions.append(tuple_(*key) > last if ascending else tuple_(*key) < last)
    return (
        query.join(Repository, Repository.id == SearchDocument.repository_id)
        .outerjoin(latest, latest.id == SearchDocument.latest_version_id)
        .outerjoin(BaseModel, BaseModel.id == latest.base_id)
        .add_columns(*(column.label(f"key_{i}") for i, column in enumerate(key)))
        .where(and_(*conditions))
        .order_by(*(key if ascending else [column.desc() for column in key]))
        .limit(bindparam("limit"))
    )


# What a result shows of its repository and latest version besides their columns, as JSON (a string on
# SQLite, decoded by psycopg on PostgreSQL): the version's tags by name; the repository's and the
# version's labels by key; the version's metrics by name, an attached (``eval``) result over the card's.
_SHOWN = {
    "sqlite": {
        "tags": "(SELECT json_group_array(name) FROM (SELECT t.name AS name FROM tags AS t "
        "WHERE t.version_id = search_documents.latest_version_id ORDER BY t.name))",
        "repository_labels": "(SELECT json_group_object(key, value) FROM (SELECT l.key AS key, "
        "l.value AS value FROM repository_labels AS l "
        "WHERE l.repository_id = search_documents.repository_id ORDER BY l.key))",
        "version_labels": "(SELECT json_group_object(key, value) FROM (SELECT l.key AS key, "
        "l.value AS value FROM version_labels AS l "
        "WHERE l.version_id = search_documents.latest_version_id ORDER BY l.key))",
        "metrics": "(SELECT json_group_object(name, value) FROM (SELECT m.name AS name, "
        "m.value AS value FROM eval_metrics AS m WHERE m.version_id = search_documents.latest_version_id "
        "AND (m.source = 'eval' OR NOT EXISTS (SELECT 1 FROM eval_metrics AS e "
        "WHERE e.version_id = m.version_id AND e.source = 'eval' AND e.name = m.name)) ORDER BY m.name))",
    },
    "postgresql": {
        "tags": "COALESCE((SELECT json_agg(t.name ORDER BY t.name) FROM tags AS t "
        "WHERE t.version_id = search_documents.latest_version_id), '[]'::json)",
        "repository_labels": "COALESCE((SELECT json_object_agg(l.key, l.value ORDER BY l.key) "
        "FROM repository_labels AS l WHERE l.repository_id = search_documents.repository_id), '{}'::json)",
        "version_labels": "COALESCE((SELECT json_object_agg(l.key, l.value ORDER BY l.key) "
        "FROM version_labels AS l WHERE l.version_id = search_documents.latest_version_id), '{}'::json)",
        "metrics": "COALESCE((SELECT json_object_agg(m.name, m.value ORDER BY m.name) FROM eval_metrics AS m "
        "WHERE m.version_id = search_documents.latest_version_id AND (m.source = 'eval' "
        "OR NOT EXISTS (SELECT 1 FROM eval_metrics AS e WHERE e.version_id = m.version_id "
        "AND e.source = 'eval' AND e.name = m.name))), '{}'::json)",
    },
}


def details(dialect: str, latest: Any) -> list[ColumnElement[Any]]:
    """The columns of a result: its repository, its latest version (``latest``) and that one's base, and
    what it shows besides (``shown``)."""
    return [
        Repository.namespace,
        Repository.name,
        Repository.visibility,
        Repository.description,
        SearchDocument.updated_at,
        SearchDocument.license,
        latest.id.label("version_id"),
        latest.number,
        latest.digest,
        latest.base_sha,
        latest.created_at.label("version_created_at"),
        latest.yanked_at,
        BaseModel.name.label("base_name"),
        BaseModel.content_digest.label("base_content_digest"),
        _shown(dialect),
    ]


def _shown(dialect: str) -> ColumnElement[Any]:
    """``shown``: [tags, repository labels, version labels, metrics] (see ``_SHOWN``), one JSON array."""
    if dialect == "sqlite":  # json(): a subquery's JSON is text to json_array, unless marked as JSON again
        parts = ", ".join(f"json({sql})" for sql in _SHOWN[dialect].values())
        return literal_column(f"json_array({parts})").label("shown")
    return literal_column(f"json_build_array({', '.join(_SHOWN[dialect].values())})").label("shown")
