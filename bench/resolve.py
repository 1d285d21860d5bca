"""Resolve throughput and latency through a running lorareg server, next to its health endpoint.

    python bench/resolve.py [--databases sqlite,postgres] [--repos 1000] [--versions 10] [--requests 2000]
                            [--rounds 3] [--auth]

For each database (SQLite in a temporary LOREG_HOME; PostgreSQL in a fresh database of its own, the
one the tests use), fills the registry with ``--repos`` repositories × ``--versions`` versions directly
through the server's own services (migrate, register a synthetic base, store one tiny adapter's blobs,
commit every version with a distinct README.md; no HTTP; then ANALYZE), then starts
``lorareg serve --workers 1`` and drives it with 1, 16 and 64 concurrent keep-alive connections
(asyncio, bare HTTP/1.1), each run a fixed number of requests (bounded in time), resolving random
repositories by ``latest``, a tag, ``#N`` and ``sha256:`` digest. The same server's ``/api/v1/health``
(no database) is the floor of the HTTP stack; health and resolve runs alternate, and each level reports
the median run of each.
Targets: resolve within 2× of the health floor's throughput at 16 concurrent, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers, dev-only

import numpy as np
from safetensors.numpy import save_file

from registry.adapters.base_manifest import BaseManifest, content_digest
from registry.db import migrate
from registry.db.session import Database
from registry.principal import REGISTRY
from registry.refs import RepoName
from registry.services.bases import register_base
from registry.services.blobs import FileEntry, upload_blob
from registry.services.push import PushRequest, push_version
from registry.services.tokens import create_token
from registry.storage import open_blob_store
from tests.server_process import Result, drive, running_server

HIDDEN = 64
RANK = 4
MODULES = ("q_proj", "v_proj")
LEVELS = (1, 16, 64)
MAX_BLOB = 1024**3
REPOS_PER_TRANSACTION = 50


@dataclass(frozen=True)
class Target:
    """One resolvable version: its repository path and its refs."""

    repo: str
    number: int
    tag: str
    digest: str


def base_manifest() -> BaseManifest:
    """A synthetic base: one layer's q/v projections (shapes only; the weights never exist)."""
    files = {"model.safetensors": "0" * 63 + "2"}
    weights = {
        f"model.layers.0.self_attn.{m}.weight": {"shape": [HIDDEN, HIDDEN], "dtype": "BF16"} for m in MODULES
    }
    return BaseManifest.from_json(
        {"weights": weights, "files": files, "content_digest": content_digest(files)}
    )


def adapter_files(work: Path) -> dict[str, bytes]:
    """A tiny valid PEFT adapter: its config and weights, as bytes."""
    rng = np.random.default_rng(0)
    tensors = {}
    for m in MODULES:
        key = f"base_model.model.model.layers.0.self_attn.{m}"
        tensors[f"{key}.lora_A.weight"] = rng.standard_normal((RANK, HIDDEN), dtype=np.float32)
        tensors[f"{key}.lora_B.weight"] = rng.standard_normal((HIDDEN, RANK), dtype=np.float32)
    weights = work / "adapter_model.safetensors"
    save_file(tensors, str(weights))
    config = {
        "peft_type": "LORA",
        "r": RANK,
        "lora_alpha": 2 * RANK,
        "target_modules": list(MODULES),
        "base_model_name_or_path": "bench-base",
        "revision": None,
    }
    return {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.safetensors": weights.read_bytes(),
    }


def populate(url: str, home: Path, work: Path, repos: int, versions: int) -> list[Target]:
    """Fill the database and blob store through the services, in batched transactions; return the
    versions to resolve."""
    migrate.upgrade(url)
    db = Database.connect(url)
    store = open_blob_store(f"file://{home}")
    manifest = base_manifest()
    targets: list[Target] = []
    try:
        with db.transaction() as session:
            register_base(session, REGISTRY, name="bench-base", manifest=manifest)
            shared = []
            for path, data in adapter_files(work).items():
                digest = hashlib.sha256(data).hexdigest()
                upload_blob(session, store, digest, [data], max_size=MAX_BLOB)
                shared.append(FileEntry(path, digest, len(data)))
        for first in range(0, repos, REPOS_PER_TRANSACTION):
            with db.transaction() as session:
                for r in range(first, min(repos, first + REPOS_PER_TRANSACTION)):
                    repo = f"bench/adapter-{r:05d}"
                    for v in range(1, versions + 1):
                        readme = f"# {repo} version {v}\n".encode()
                        digest = hashlib.sha256(readme).hexdigest()
                        upload_blob(session, store, digest, [readme], max_size=MAX_BLOB)
                        files = [*shared, FileEntry("README.md", digest, len(readme))]
                        request = PushRequest(
                            files=files,
                            base_sha=manifest.content_digest,
                            author="bench",
                            tags=[f"v{v}"],
                        )
                        result = push_version(
                            session,
                            store,
                            RepoName.parse(repo),
                            request,
                            principal=REGISTRY,
                            max_config_size=1024**2,
                        )
                        version = result.version
                        targets.append(Target(repo, version.number, f"v{v}", version.digest))
        settle(db)
    finally:
        db.dispose()
    return targets


def settle(db: Database) -> None:
    """Leave the database as a long-running one is: statistics gathered (on PostgreSQL, the tables also
    vacuumed), so that no background maintenance of the fresh rows runs during the measurements."""
    command = "ANALYZE" if db.engine.dialect.name == "sqlite" else "VACUUM ANALYZE"
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(command)


def resolve_paths(targets: list[Target], count: int, seed: int) -> list[str]:
    """``count`` random resolve paths over random repositories and every kind of ref."""
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        target = rng.choice(targets)
        ref = rng.choice(("latest", target.tag, f"%23{target.number}", f"sha256:{target.digest}"))
        paths.append(f"/api/v1/repos/{target.repo}/resolve/{ref}")
    return paths


def median_run(runs: list[Result]) -> Result:
    """The run of median throughput (this machine's neighbours come and go: one run can be an outlier)."""
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def reader_token(url: str) -> str:
    """A new read-scoped token's secret, for a server with ``LOREG_AUTH=required``."""
    db = Database.connect(url)
    try:
        with db.transaction() as session:
            return create_token(session, REGISTRY, name="bench-reader", scope="read")[1]
    finally:
        db.dispose()


def measure(
    url: str, targets: list[Target], requests: int, time_limit: float, rounds: int, headers: dict[str, str]
) -> bool:
    """Print one table: health and resolve (with ``headers``) at each concurrency level, each the median
    of ``rounds`` interleaved runs; return whether the targets hold."""
    print(
        f"{'clients':>7} {'health req/s':>12} {'resolve req/s':>13} {'health/resolve':>14} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'health p99':>10} {'n':>6} {'errors':>6}  targets"
    )
    ok = True
    # warm the server's caches and pools on every kind of ref
    asyncio.run(drive(url, resolve_paths(targets, 200, seed=1), 4, time_limit, headers))
    for level in LEVELS:
        healths, resolves = [], []
        for round_ in range(rounds):
            healths.append(asyncio.run(drive(url, ["/api/v1/health"] * requests, level, time_limit)))
            paths = resolve_paths(targets, requests, seed=level * 100 + round_)
            resolves.append(asyncio.run(drive(url, paths, level, time_limit, headers)))
        health, resolve = median_run(healths), median_run(resolves)
        ratio = health.rate / resolve.rate
        p99 = resolve.percentile_ms(99)
        verdict = "-"
        if level == 16:
            holds = ratio <= 2 and p99 < 50 and resolve.errors == 0
            ok = ok and holds
            verdict = f"{'ratio ≤ 2 ' + ('ok' if ratio <= 2 else 'MISSED')}, p99 < 50 ms "
            verdict += "ok" if p99 < 50 else "MISSED"
        elif p99 >= 50:
            verdict = "p99 ≥ 50 ms"
        print(
            f"{level:>7} {health.rate:>12.0f} {resolve.rate:>13.0f} {ratio:>13.2f}x "
            f"{resolve.percentile_ms(50):>8.1f} {p99:>8.1f} {health.percentile_ms(99):>10.1f} "
            f"{resolve.requests:>6} {sum(r.errors for r in healths + resolves):>6}  {verdict}"
        )
    return ok


@contextlib.contextmanager
def database_url(database: str, home: Path) -> Iterator[str | None]:
    """The URL of an empty database of this kind, or None (with a note) when it is not available."""
    if database == "sqlite":
        yield f"sqlite:///{home / 'lorareg.db'}"
        return
    if database != "postgres":
        raise SystemExit(f"unknown database {database!r}: sqlite or postgres")
    from tests.service_checks import POSTGRES_URL, fresh_postgres_database  # dev-only, as the tests

    try:
        context = fresh_postgres_database("lorareg_bench")
        url = context.__enter__()
    except BaseException as skipped:  # pytest.skip's exception when PostgreSQL is down
        if isinstance(skipped, KeyboardInterrupt):
            raise
        print(f"postgres: skipped ({POSTGRES_URL}: {skipped})")
        yield None
        return
    try:
        yield url
    finally:
        context.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite, postgres")
    parser.add_argument("--repos", type=int, default=1000, help="repositories to create")
    parser.add_argument("--versions", type=int, default=10, help="versions per repository")
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds at most per measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved runs per level (the median counts)"
    )
    parser.add_argument(
        "--auth", action="store_true", help="LOREG_AUTH=required: every resolve sends a read token"
    )
    args = parser.parse_args()

    print(
        f"lorareg resolve benchmark: {args.repos} repositories x {args.versions} versions, "
        f"{args.requests} requests per run (at most {args.time_limit:.0f} s), median of {args.rounds} "
        "interleaved runs per level, loopback; "
        f"server (lorareg serve --workers 1) and client (asyncio, bare HTTP/1.1) share "
        f"{os.cpu_count()} CPU cores"
    )
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for database in args.databases.split(","):
            home = Path(tmp) / database
            home.mkdir()
            with database_url(database, home) as url:
                if url is None:
                    continue
                start = time.perf_counter()
                targets = populate(url, home, Path(tmp), args.repos, args.versions)
                populated = time.perf_counter() - start
                print(
                    f"\n{database}: populated {len(targets)} versions in {populated:.1f} s "
                    f"({len(targets) / populated:.0f} versions/s, through the services in-process)"
                )
                settings, headers = {"LOREG_DATABASE_URL": url}, {}
                if args.auth:
                    settings["LOREG_AUTH"] = "required"
                    headers["Authorization"] = f"Bearer {reader_token(url)}"
                with running_server(home, settings) as server:
                    auth = " (LOREG_AUTH=required; resolves send a read token)" if args.auth else ""
                    print(f"server {server}{auth}")
                    measured = measure(server, targets, args.requests, args.time_limit, args.rounds, headers)
                    ok = measured and ok
    print(f"\ntargets at 16 clients (resolve ≥ health/2, p99 < 50 ms): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
