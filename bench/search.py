"""Search latency through a running lorareg server, next to its health endpoint.

    python bench/search.py [--databases sqlite,postgres] [--repos 100000] [--requests 1000] [--rounds 3]
                           [--postgres-url URL] [--auth]

For each database (SQLite in a temporary LOREG_HOME; PostgreSQL in the database ``--postgres-url`` names,
created beforehand with ``createdb``, whose schema is replaced), bulk-inserts ``--repos`` repositories ×
3 versions straight through SQLAlchemy Core (bases, versions with model cards, tags, repository and
version labels, card and attached eval metrics), fills ``search_documents`` with one set-based statement
(``search_index.rebuild``), gathers statistics, then starts ``lorareg serve --workers 1`` and drives it
with 1 and 16 concurrent keep-alive connections (asyncio, bare HTTP/1.1) with typical searches — words,
a label, a base, a metric sort, and all of them combined — each kind with random parameters, alternating
with the same server's ``/api/v1/health`` (no database), the median run of ``--rounds`` counting.
Targets: every search's p99 < 50 ms at 1 client, and within 3× of health at 16 clients (health's
throughput ÷ the search's). ``hits`` is the share of the searches the server's answer cache answered (from
its /metrics); ``--no-cache`` (LOREG_SEARCH_CACHE_ENTRIES=0) measures every search found afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers, dev-only

import httpx
from sqlalchemy import Table, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from registry.db import migrate, models
from registry.db.session import Database
from registry.principal import REGISTRY, Principal
from registry.services import search as searching
from registry.services import search_index
from registry.services.tokens import create_token
from tests.server_process import Result, drive, running_server

VERSIONS = 3
BASES = 4
NAMESPACES = 50
TASKS = (
    "sql", "summarization", "translation", "chat", "code", "math", "reasoning", "classification",
    "extraction", "retrieval", "medical", "legal", "finance", "support", "poetry", "dialogue",
    "tagging", "sentiment", "questions", "entities",
)  # fmt: skip
WORDS = (
    "model", "trained", "dataset", "examples", "instruction", "tuned", "evaluation", "quality", "fast",
    "small", "large", "context", "tokens", "prompt", "answers", "domain", "english", "french", "german",
    "customer", "tickets", "reports", "notes", "documents", "queries", "tables", "schemas", "review",
    "safety", "style", "formal", "casual", "short", "long", "accurate", "robust", "baseline", "ablation",
)  # fmt: skip
LICENSES = ("apache-2.0", "mit", "llama3.1", "cc-by-4.0", "openrail")
METRIC = "gsm8k/exact_match"
LEVELS = (1, 16)
CHUNK = 20_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def populate(url: str, repos: int, seed: int = 0) -> None:
    """Fill an empty database: every table search reads, bulk-inserted in chunks; then the documents."""
    migrate.upgrade(url)
    rng = random.Random(seed)
    db = Database.connect(url)
    try:
        with db.transaction() as session:
            _fill(session, repos, rng)
            search_index.rebuild(session)
        settle(db)
    finally:
        db.dispose()


def _fill(session: Session, repos: int, rng: random.Random) -> None:
    digests = [hashlib.sha256(f"base-{b}".encode()).hexdigest() for b in range(BASES)]
    _insert(
        session,
        models.BaseModel.__table__,
        [
            {"id": b + 1, "name": f"bench-base-{b}", "content_digest": d, "manifest": {}, "created_at": T0}
            for b, d in enumerate(digests)
        ],
    )
    _insert(
        session,
        models.BaseModelSha.__table__,
        [{"sha": d, "kind": "content", "base_id": b + 1} for b, d in enumerate(digests)],
    )
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in ("repos", "versions", "tags", "cards")}
    rows.update({name: [] for name in ("repo_labels", "version_labels", "metrics")})
    for r in range(1, repos + 1):
        _repository(r, rng, digests, rows)
        if r % CHUNK == 0 or r == repos:
            for name, table in (
                ("repos", models.Repository.__table__),
                ("versions", models.Version.__table__),
                ("tags", models.Tag.__table__),
                ("cards", models.VersionCard.__table__),
                ("repo_labels", models.RepositoryLabel.__table__),
                ("version_labels", models.VersionLabel.__table__),
                ("metrics", models.EvalMetric.__table__),
            ):
                _insert(session, table, rows[name])
                rows[name].clear()


def _repository(
    r: int, rng: random.Random, digests: list[str], rows: dict[str, list[dict[str, Any]]]
) -> None:
    """Repository ``r``: its versions (cards, metrics), its ``latest`` tag and its labels, as rows."""
    task, base = rng.choice(TASKS), rng.randrange(BASES)
    namespace = f"team-{r % NAMESPACES:02d}"
    name = f"{task}-adapter-{r:06d}"
    created = T0 + timedelta(seconds=r * 60 + rng.randrange(60))
    rows["repos"].append(
        {
            "id": r,
            "namespace": namespace,
            "name": name,
            "visibility": "public" if rng.random() < 0.2 else "private",
            "description": f"{task} adapter for {rng.choice(WORDS)} {rng.choice(WORDS)}",
            "created_at": created,
        }
    )
    license_ = rng.choice(LICENSES)
    for n in range(1, VERSIONS + 1):
        v = (r - 1) * VERSIONS + n
        rows["versions"].append(
            {
                "id": v,
                "repository_id": r,
                "number": n,
                "digest": hashlib.sha256(f"{r}/{n}".encode()).hexdigest(),
                "manifest": {},
                "config": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
                "file_list": [],
                "base_id": base + 1,
                "base_sha": digests[base],
                "author": "bench",
                "pushed_by": "bench",
                "message": None,
                "provenance": {},
                "created_at": created + timedelta(hours=n),
                "yanked_at": None,
            }
        )
        filler = " ".join(rng.choices(WORDS, k=40))
        rows["cards"].append(
            {
                "version_id": v,
                "card_data": {
                    "base_model": f"bench-base-{base}",
                    "license": license_,
                    "tags": [task, "lora", "peft"],
                    "datasets": [f"org/{task}-data-{rng.randrange(10)}"],
                    "language": rng.choice(("en", "fr", "de", "zh")),
                    "library_name": "peft",
                    "pipeline_tag": "text-generation",
                },
                "markdown": f"# {name}\n\nA LoRA adapter for {task} on bench-base-{base}, v{n}. {filler}\n",
                "generated": False,
                "warnings": [],
            }
        )
        score = round(rng.random(), 4)
        rows["metrics"].append(_metric(v, "card", METRIC, score))
        if rng.random() < 0.5:
            rows["metrics"].append(_metric(v, "eval", "arc_easy/acc", round(rng.random(), 4)))
        if rng.random() < 0.1:  # an attached result for a name the card has too: it wins
            rows["metrics"].append(_metric(v, "eval", METRIC, round(rng.random(), 4)))
    latest = (r - 1) * VERSIONS + (VERSIONS if rng.random() < 0.9 else VERSIONS - 1)
    rows["tags"].append({"repository_id": r, "name": "latest", "version_id": latest, "updated_at": created})
    labels = {"team": namespace, "validation": rng.choice(("approved", "pending", "rejected"))}
    labels["owner"] = f"person-{rng.randrange(1000)}"
    rows["repo_labels"] += [
        {"repository_id": r, "key": k, "value": value, "updated_at": created, "updated_by": "bench"}
        for k, value in labels.items()
    ]
    if rng.random() < 0.2:
        rows["version_labels"].append(
            {
                "version_id": latest,
                "key": "ci/suite",
                "value": "passed",
                "updated_at": created,
                "updated_by": "ci",
            }
        )


def _metric(version_id: int, source: str, name: str, value: float) -> dict[str, Any]:
    task, _, metric = name.partition("/")
    return {
        "version_id": version_id,
        "source": source,
        "task": task,
        "metric": metric,
        "name": name,
        "value": value,
        "stderr": None,
        "dataset": None,
        "created_at": T0,
        "created_by": "bench",
    }


def _insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(table), rows)


def settle(db: Database) -> None:
    """Statistics gathered (on PostgreSQL, the tables vacuumed too), as a long-running database has them."""
    command = "ANALYZE" if db.engine.dialect.name == "sqlite" else "VACUUM ANALYZE"
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(command)


# The searches ------------------------------------------------------------------------------------


Params = dict[str, Any]
QUERIES: dict[str, Callable[[random.Random], Params]] = {
    "words": lambda rng: {"q": rng.choice(TASKS)},
    "two words": lambda rng: {"q": f"{rng.choice(TASKS)} {rng.choice(WORDS)}"},
    "every repo's word": lambda rng: {"q": "lora"},
    "label": lambda rng: {
        "label": [rng.choice(("validation:approved", f"owner:person-{rng.randrange(1000)}"))]
    },
    "base": lambda rng: {"base": f"bench-base-{rng.randrange(BASES)}"},
    "metric sort": lambda rng: {"sort": f"metric:{METRIC}"},
    "namespace by name": lambda rng: {"namespace": f"team-{rng.randrange(NAMESPACES):02d}", "sort": "name"},
    "combined": lambda rng: {
        "q": rng.choice(TASKS),
        "label": ["validation:approved"],
        "base": f"bench-base-{rng.randrange(BASES)}",
        "metric": ["arc_easy/acc>=0.5"],
        "sort": f"metric:{METRIC}",
    },
}


def path(params: Params) -> str:
    return f"/api/v1/search?{urlencode(params, doseq=True)}"


def plan_of(session: Session, principal: Principal, params: Params) -> list[str]:
    """The plan of the statement that finds what the search ``params`` (as the API takes them) match:
    SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN ANALYZE."""
    seen: list[tuple[str, Any]] = []
    connection = session.connection()

    def grab(_connection: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", grab)
    try:
        query = searching.SearchQuery(
            q=params.get("q"),
            namespace=params.get("namespace"),
            base=params.get("base"),
            labels=params.get("label", ()),
            metrics=params.get("metric", ()),
            sort=params.get("sort", "updated"),
        )
        searching.search(session, principal, query)
    finally:
        event.remove(connection, "before_cursor_execute", grab)
    statement, parameters = next((s, p) for s, p in seen if "search_documents.updated_at" in s)
    sqlite = connection.dialect.name == "sqlite"
    plan = connection.exec_driver_sql(
        ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, COSTS OFF) ") + statement, parameters
    )
    return [row[3] if sqlite else row[0] for row in plan]


def explain(url: str) -> None:
    """Print the plan of one search of each kind, as a caller limited to five namespaces runs it."""
    db = Database.connect(url)
    reader = Principal(name="bench-reader", scope="read", namespaces=tuple(f"team-{n:02d}" for n in range(5)))
    rng = random.Random(2)
    try:
        with db.transaction(write=False) as session:
            for kind, make in QUERIES.items():
                params = make(rng)
                print(f"\n{kind}: {path(params)}")
                for line in plan_of(session, reader, params):
                    print(f"    {line}")
    finally:
        db.dispose()


def cache_lookups(url: str) -> dict[str, float]:
    """The server's search cache lookups so far, by result (hit, miss)."""
    scraped = httpx.get(f"{url}/metrics").text
    found = re.findall(r'^lorareg_search_cache_lookups_total\{result="(\w+)"\} (\S+)$', scraped, re.MULTILINE)
    return {result: float(value) for result, value in found}


def median_run(runs: list[Result]) -> Result:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def measure(url: str, requests: int, time_limit: float, rounds: int, headers: dict[str, str]) -> bool:
    """Print one table: each kind of search at each level next to health; whether the targets hold."""
    print(
        f"{'search':<18} {'clients':>7} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7} {'health p50':>10} "
        f"{'health p99':>10} {'health req/s':>12} {'x health':>8} {'p99 x':>6} {'hits':>5} {'errors':>6}"
        "  target"
    )
    rng = random.Random(1)
    for make in QUERIES.values():  # warm the server's caches and pools
        asyncio.run(drive(url, [path(make(rng)) for _ in range(50)], 4, time_limit, headers))
    ok = True
    for level in LEVELS:
        for kind, make in QUERIES.items():
            healths, searches = [], []
            looked_up = cache_lookups(url)
            for _ in range(rounds):
                healths.append(asyncio.run(drive(url, ["/api/v1/health"] * requests, level, time_limit)))
                paths = [path(make(rng)) for _ in range(requests)]
                searches.append(asyncio.run(drive(url, paths, level, time_limit, headers)))
            after = cache_lookups(url)
            hits, misses = (after.get(r, 0) - looked_up.get(r, 0) for r in ("hit", "miss"))
            health, found = median_run(healths), median_run(searches)
            ratio = health.rate / found.rate
            p99 = found.percentile_ms(99)
            errors = sum(r.errors for r in healths + searches)
            holds = (p99 < 50 if level == 1 else ratio <= 3) and errors == 0
            ok = ok and holds
            target = ("p99 < 50 ms" if level == 1 else "≤ 3x health") + (" ok" if holds else " MISSED")
            print(
                f"{kind:<18} {level:>7} {found.percentile_ms(50):>7.1f} {p99:>7.1f} {found.rate:>7.0f} "
                f"{health.percentile_ms(50):>10.1f} {health.percentile_ms(99):>10.1f} {health.rate:>12.0f} "
                f"{ratio:>7.2f}x {p99 / health.percentile_ms(99):>5.1f}x "
                f"{hits / max(hits + misses, 1):>5.0%} {errors:>6}  {target}"
            )
    return ok


def reader_token(url: str) -> str:
    """A read token limited to five namespaces: its searches see those and the public repositories."""
    db = Database.connect(url)
    try:
        with db.transaction() as session:
            spaces = [f"team-{n:02d}" for n in range(5)]
            return create_token(session, REGISTRY, name="bench-reader", scope="read", namespaces=spaces)[1]
    finally:
        db.dispose()


@contextlib.contextmanager
def database_url(database: str, home: Path, postgres_url: str) -> Iterator[str | None]:
    """An empty database of this kind, or None (with a note) when it is not reachable."""
    if database == "sqlite":
        yield f"sqlite:///{home / 'lorareg.db'}"
        return
    if database != "postgres":
        raise SystemExit(f"unknown database {database!r}: sqlite or postgres")
    if make_url(postgres_url).database in (None, "test", "postgres"):
        raise SystemExit(f"--postgres-url names {make_url(postgres_url).database!r}: give the bench its own")
    db = Database.connect(postgres_url)
    try:
        with db.transaction() as session:
            session.execute(text("DROP SCHEMA public CASCADE"))
            session.execute(text("CREATE SCHEMA public"))
    except Exception as error:  # unreachable, or no such database
        print(f"postgres: skipped ({postgres_url}: {error.__class__.__name__}: {str(error).splitlines()[0]})")
        yield None
        return
    finally:
        db.dispose()
    yield postgres_url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite, postgres")
    parser.add_argument("--repos", type=int, default=100_000, help="repositories (3 versions each)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per measurement")
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds at most per measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved runs per level (the median counts)"
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/lorareg_bench",
        help="a database of the bench's own (createdb -h 127.0.0.1 lorareg_bench); its schema is replaced",
    )
    parser.add_argument(
        "--auth", action="store_true", help="LOREG_AUTH=required: searches send a token of five namespaces"
    )
    parser.add_argument("--explain", action="store_true", help="print each kind of search's query plan")
    parser.add_argument(
        "--no-cache", action="store_true", help="LOREG_SEARCH_CACHE_ENTRIES=0: no answer cache"
    )
    args = parser.parse_args()
    print(
        f"lorareg search benchmark: {args.repos} repositories x {VERSIONS} versions, {args.requests} "
        f"requests per run (at most {args.time_limit:.0f} s), median of {args.rounds} interleaved runs; "
        f"server (lorareg serve --workers 1) and client share {os.cpu_count()} CPU cores"
    )
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for database in args.databases.split(","):
            home = Path(tmp) / database
            home.mkdir()
            with database_url(database, home, args.postgres_url) as url:
                if url is None:
                    continue
                start = time.perf_counter()
                populate(url, args.repos)
                print(f"\n{database}: populated in {time.perf_counter() - start:.1f} s")
                if args.explain:
                    explain(url)
                settings, headers = {"LOREG_DATABASE_URL": url}, {}
                if args.no_cache:
                    settings["LOREG_SEARCH_CACHE_ENTRIES"] = "0"
                if args.auth:
                    settings["LOREG_AUTH"] = "required"
                    headers["Authorization"] = f"Bearer {reader_token(url)}"
                with running_server(home, settings) as server:
                    ok = measure(server, args.requests, args.time_limit, args.rounds, headers) and ok
    print(f"\ntargets (p99 < 50 ms at 1 client, within 3x of health at 16): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
