"""The web UI's page times through a running lorareg server, next to its health endpoint.

    python bench/ui.py [--versions 1000] [--requests 200] [--rounds 3] [--postgres-url URL]

Bulk-inserts straight through SQLAlchemy Core, into a fresh SQLite database (and, with ``--postgres-url``,
into the PostgreSQL database it names, created beforehand with ``createdb``, whose schema is replaced):
one repository, ``bench/assistant``, of ``--versions`` versions whose parents form a lineage with branches
and merges (merge jobs' outputs, some with a parent in another repository, ``bench/upstream``), tags with
their histories, repository and version labels, model cards and eval metrics, all on one base model shaped
like an 8B Llama; the merge jobs, and a few failed diffs. Then it starts ``lorareg serve --workers 1`` and
times, at 1 client over keep-alive HTTP/1.1, the front page, the repository page (the newest 200 versions
are its lineage graph), a version page, the base's page and ``/jobs``, alternating with the same server's
``/api/v1/health`` (no database), the median run of ``--rounds`` counting. At 1 client on loopback, the
round-trip latency is the server's time. Target: the repository page's p99 < 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers, dev-only

import httpx
from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from bench.search import database_url, median_run, settle
from registry.adapters.base_manifest import content_digest
from registry.db import migrate, models
from registry.db.session import Database
from registry.services import search_index
from tests.server_process import Result, drive, running_server

NAMESPACE, NAME, UPSTREAM = "bench", "assistant", "upstream"
UPSTREAM_VERSIONS = 20
LAYERS, HIDDEN, KV, FFN, VOCAB = 32, 4096, 1024, 14336, 128256
BASE_NAME = "bench-llama-8b"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_MS = 150
REPOSITORY_PAGE = "repository page"
# What the lineage does at each version: fork a branch, merge two heads (a merge job's output), merge a
# head with a version of bench/upstream; otherwise a version follows one branch's head.
FORK, MERGE, CROSS = 0.06, 0.10, 0.04
MAX_BRANCHES = 6
ID_SPAN = 100_000  # a version's id: its repository's id × ID_SPAN + its number


def base_manifest() -> dict[str, Any]:
    """An 8B Llama's shape manifest (every 2-D weight), as ``lorareg base register`` would send it."""
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "lm_head.weight": (VOCAB, HIDDEN)}
    per_layer = {
        "self_attn.q_proj": (HIDDEN, HIDDEN),
        "self_attn.k_proj": (KV, HIDDEN),
        "self_attn.v_proj": (KV, HIDDEN),
        "self_attn.o_proj": (HIDDEN, HIDDEN),
        "mlp.gate_proj": (FFN, HIDDEN),
        "mlp.up_proj": (FFN, HIDDEN),
        "mlp.down_proj": (HIDDEN, FFN),
    }
    for layer in range(LAYERS):
        shapes.update({f"model.layers.{layer}.{m}.weight": shape for m, shape in per_layer.items()})
    files = {f"model-{i:05d}-of-00004.safetensors": _hex(f"shard {i}") for i in range(1, 5)}
    weights = {name: {"shape": list(shape), "dtype": "BF16"} for name, shape in sorted(shapes.items())}
    return {"weights": weights, "files": files, "content_digest": content_digest(files)}


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Rows:
    """The rows to insert, by table."""

    tables: dict[Table, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, model: type[models.Base], **row: Any) -> None:
        table = model.__table__
        assert isinstance(table, Table)
        self.tables.setdefault(table, []).append(row)


@dataclass(frozen=True)
class Sample:
    """What the pages are asked for: the repository, one of its versions, the base."""

    repo: str
    version: int
    base: str


def populate(url: str, versions: int, seed: int = 0) -> Sample:
    """Fill an empty database (every row a page reads), then the search documents and statistics."""
    migrate.upgrade(url)
    rows, rng = Rows(), random.Random(seed)
    manifest = base_manifest()
    digest = manifest["content_digest"]
    rows.add(models.BaseModel, id=1, name=BASE_NAME, content_digest=digest, manifest=manifest, created_at=T0)
    rows.add(models.BaseModelSha, sha=digest, kind="content", base_id=1)
    rows.add(models.BaseModelSha, sha=_hex("hf revision")[:40], kind="hf", base_id=1)
    for repository_id, name in ((1, UPSTREAM), (2, NAME)):
        rows.add(
            models.Repository,
            id=repository_id,
            namespace=NAMESPACE,
            name=name,
            visibility="public",
            description=f"{name}: LoRA adapters for the support assistant",
            created_at=T0,
        )
    upstream = [_version(rows, rng, 1, number, digest) for number in range(1, UPSTREAM_VERSIONS + 1)]
    _lineage(rows, rng, upstream, versions, digest)
    db = Database.connect(url)
    try:
        with db.transaction() as session:
            for table, found in rows.tables.items():  # in the order they were added: parents first
                _insert(session, table, found)
            search_index.rebuild(session)
        settle(db)
    finally:
        db.dispose()
    return Sample(repo=f"{NAMESPACE}/{NAME}", version=versions - versions // 10, base=digest)


def _insert(session: Session, table: Table, found: list[dict[str, Any]], chunk: int = 5000) -> None:
    for start in range(0, len(found), chunk):
        session.execute(insert(table), found[start : start + chunk])


def _lineage(rows: Rows, rng: random.Random, upstream: list[int], versions: int, base: str) -> None:
    """``bench/assistant``'s versions: each one's parents (a branch's head; two for a merge), the merge
    jobs that made the merges, its tags with their moves, labels, and a few failed diff jobs."""
    heads = [_version(rows, rng, 2, 1, base)]
    _parents(rows, heads[0], [upstream[-1]])
    ours = list(heads)
    for number in range(2, versions + 1):
        roll = rng.random()
        replaced: list[int] = []
        if roll < FORK and len(heads) < MAX_BRANCHES:
            parents = [rng.choice(ours)]
        elif roll < FORK + MERGE and len(heads) > 1:
            parents = rng.sample(heads, 2)
            replaced = parents
        elif roll < FORK + MERGE + CROSS:
            parents = [rng.choice(heads), rng.choice(upstream)]
            replaced = parents[:1]
        else:
            parents = [rng.choice(heads)]
            replaced = parents
        merged = len(parents) > 1
        job = _merge_job(rows, number, parents) if merged else None
        version = _version(rows, rng, 2, number, base, job=job)
        _parents(rows, version, parents)
        ours.append(version)
        heads = [head for head in heads if head not in replaced] + [version]
    _tags(rows, ours)
    _labels(rows, rng, ours)
    for n in range(5):
        _job(rows, "diff", status="failed", created=T0 + timedelta(days=n), error="the job ran out of memory")


def _version(
    rows: Rows, rng: random.Random, repository_id: int, number: int, base: str, *, job: str | None = None
) -> int:
    """One version (its files, card and, for some, eval metrics); its id."""
    version_id = repository_id * ID_SPAN + number
    name = UPSTREAM if repository_id == 1 else NAME
    digest = _digest(repository_id, number)
    files = [
        {"path": path, "digest": _hex(f"{digest}/{path}"), "size": size}
        for path, size in (
            ("README.md", 2_000),
            ("adapter_config.json", 800),
            ("adapter_model.safetensors", 54_000_000),
        )
    ]
    for entry in files:
        rows.add(models.Blob, digest=entry["digest"], size=entry["size"], created_at=T0)
    r = rng.choice((8, 16, 32))
    created = T0 + timedelta(hours=number)
    rows.add(
        models.Version,
        id=version_id,
        repository_id=repository_id,
        number=number,
        digest=digest,
        manifest={"schema": "lorareg.adapter.v1", "files": files, "base": {"digest": base}},
        config={
            "kind": "adapter",
            "peft_type": "LORA",
            "r": r,
            "lora_alpha": 2 * r,
            "use_rslora": False,
            "fan_in_fan_out": False,
            "target_modules": sorted(TARGETS),
            "modules": LAYERS * len(TARGETS),
            "ranks": [r],
            "base_model_name_or_path": BASE_NAME,
            "base_name": BASE_NAME,
        },
        file_list=files,
        base_id=1,
        base_sha=base,
        author=f"job:{job}" if job else "bench",
        pushed_by="lorareg" if job else "ci-bot",
        message=f"merge #{number}" if job else f"training run {number}",
        provenance={"job": job, "kind": "merge", "params": {"method": "linear"}} if job else {},
        created_at=created,
        yanked_at=None,
    )
    for entry in files:
        rows.add(
            models.VersionFile,
            version_id=version_id,
            path=entry["path"],
            blob_digest=entry["digest"],
            size=entry["size"],
        )
    rows.add(
        models.VersionCard,
        version_id=version_id,
        card_data={"base_model": BASE_NAME, "license": "apache-2.0", "tags": ["support", "lora"]},
        markdown=f"# {name} #{number}\n\nA LoRA adapter for support tickets, trained on run {number}.\n",
        generated=job is not None,
        warnings=[],
    )
    if number % 5 == 0:
        for metric, value in (("gsm8k/exact_match", rng.random()), ("arc_easy/acc", rng.random())):
            task, _, short = metric.partition("/")
            rows.add(
                models.EvalMetric,
                version_id=version_id,
                source="eval",
                task=task,
                metric=short,
                name=metric,
                value=round(value, 4),
                stderr=None,
                dataset=None,
                created_at=created,
                created_by="ci-bot",
            )
    return version_id


def _parents(rows: Rows, child: int, parents: list[int]) -> None:
    for position, parent in enumerate(parents):
        rows.add(models.VersionParent, version_id=child, position=position, parent_id=parent)


def _merge_job(rows: Rows, number: int, parents: list[int]) -> str:
    """The succeeded merge job whose output is version ``number`` of bench/assistant; its id."""
    output = {"repo": f"{NAMESPACE}/{NAME}", "tag": None}
    result = {
        "report": {"method": "linear", "modules": LAYERS * len(TARGETS)},
        "version": {"repo": output["repo"], "number": number, "digest": f"sha256:{_digest(2, number)}"},
    }
    created = T0 + timedelta(hours=number) - timedelta(minutes=5)
    inputs = [_described(parent) for parent in parents]
    return _job(
        rows, "merge", status="succeeded", created=created, inputs=inputs, output=output, result=result
    )


def _described(version_id: int) -> dict[str, Any]:
    """A version as a job's inputs name it."""
    repository_id, number = divmod(version_id, ID_SPAN)
    name = UPSTREAM if repository_id == 1 else NAME
    return {
        "repo": f"{NAMESPACE}/{name}",
        "digest": _digest(repository_id, number),
        "number": number,
        "kind": "adapter",
    }


def _digest(repository_id: int, number: int) -> str:
    return _hex(f"{repository_id}/{number}")


def _job(
    rows: Rows,
    kind: str,
    *,
    status: str,
    created: datetime,
    inputs: list[dict[str, Any]] | None = None,
    output: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> str:
    job = _hex(f"{kind} job of {created.isoformat()}")[:32]
    found = inputs or [_described(2 * ID_SPAN + number) for number in (1, 2)]
    rows.add(
        models.Job,
        id=job,
        kind=kind,
        key=_hex(job),
        inputs={"versions": [{**item, "ref": f"{item['repo']}#{item['number']}"} for item in found]},
        params={"method": "linear"} if kind == "merge" else {},
        output=output,
        queue="cpu",
        status=status,
        attempts=1,
        worker="bench-worker",
        device="cpu",
        progress=None,
        submitted_by="ci-bot",
        created_at=created,
        started_at=created + timedelta(seconds=2),
        finished_at=created + timedelta(seconds=40),
        heartbeat_at=created + timedelta(seconds=38),
        cancel_requested=False,
        error=error,
        result=result,
    )
    return job


def _tags(rows: Rows, version_ids: list[int]) -> None:
    """``latest`` on the newest, ``prod`` and ``staging`` moved along ten times each, ``v1``…``v5``."""
    newest = len(version_ids)
    pointing = {"latest": newest, "staging": newest - 5, "prod": newest - 50}
    pointing.update({f"v{n}": n * newest // 6 for n in range(1, 6)})
    for tag, number in pointing.items():
        number = max(number, 1)
        rows.add(
            models.Tag,
            repository_id=2,
            name=tag,
            version_id=version_ids[number - 1],
            updated_at=T0 + timedelta(hours=number),
        )
        moves = range(max(number - 100, 1), number + 1, 10) if tag in ("prod", "staging") else [number]
        previous = None
        for moved in moves:
            rows.add(
                models.TagEvent,
                repository_id=2,
                tag=tag,
                old_version_id=previous,
                new_version_id=version_ids[moved - 1],
                actor="ci-bot",
                created_at=T0 + timedelta(hours=moved),
            )
            previous = version_ids[moved - 1]


def _labels(rows: Rows, rng: random.Random, version_ids: list[int]) -> None:
    for key, value in (("team", "support"), ("owner", "person-17"), ("tier", "gold")):
        rows.add(
            models.RepositoryLabel, repository_id=2, key=key, value=value, updated_at=T0, updated_by="admin"
        )
    for version_id in rng.sample(version_ids, k=min(100, len(version_ids))):
        for key, value in (("validation", rng.choice(("approved", "rejected"))), ("ci/suite", "passed")):
            rows.add(
                models.VersionLabel,
                version_id=version_id,
                key=key,
                value=value,
                updated_at=T0,
                updated_by="ci-bot",
            )


# The measurement ---------------------------------------------------------------------------------


def pages(sample: Sample) -> dict[str, str]:
    return {
        "front page": "/",
        REPOSITORY_PAGE: f"/{sample.repo}",
        "version page": f"/{sample.repo}/v/{sample.version}",
        "base page": f"/bases/{sample.base}",
        "jobs": "/jobs",
    }


def measure(url: str, sample: Sample, requests: int, time_limit: float, rounds: int) -> bool:
    """Print one table: each page next to health, at 1 client; whether the repository page's target holds."""
    print(
        f"{'page':<16} {'p50 ms':>7} {'p99 ms':>7} {'health p50':>10} {'health p99':>10} {'errors':>6}  path"
    )
    met = False
    for kind, path in pages(sample).items():
        status = httpx.get(f"{url}{path}", timeout=60).status_code
        if status != 200:
            print(f"{kind:<16} not measured: the server answers {status} to {path}")
            continue
        asyncio.run(drive(url, [path] * 20, 1, time_limit))  # warm the server's caches and pools
        healths: list[Result] = []
        timed: list[Result] = []
        for _ in range(rounds):
            healths.append(asyncio.run(drive(url, ["/api/v1/health"] * requests, 1, time_limit)))
            timed.append(asyncio.run(drive(url, [path] * requests, 1, time_limit)))
        health, found = median_run(healths), median_run(timed)
        errors = sum(r.errors for r in healths + timed)
        print(
            f"{kind:<16} {found.percentile_ms(50):>7.1f} {found.percentile_ms(99):>7.1f} "
            f"{health.percentile_ms(50):>10.1f} {health.percentile_ms(99):>10.1f} {errors:>6}  {path}"
        )
        if kind == REPOSITORY_PAGE:
            met = found.percentile_ms(99) < TARGET_MS and errors == 0
    return met


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", type=int, default=1000, help="versions of the repository")
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds at most per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per page (the median counts)")
    parser.add_argument(
        "--postgres-url",
        help="also PostgreSQL: a database of the bench's own (createdb lorareg_bench), its schema replaced",
    )
    args = parser.parse_args()
    print(
        f"lorareg web UI benchmark: {NAMESPACE}/{NAME} with {args.versions} versions, {args.requests} "
        f"requests per run (at most {args.time_limit:.0f} s), median of {args.rounds} runs, 1 client; server "
        f"(lorareg serve --workers 1) and client share {os.cpu_count()} CPU cores. Server time: the "
        "round-trip latency at 1 client on loopback."
    )
    ok = True
    databases = ["sqlite"] + (["postgres"] if args.postgres_url else [])
    with tempfile.TemporaryDirectory() as tmp:
        for database in databases:
            home = Path(tmp) / database
            home.mkdir()
            with database_url(database, home, args.postgres_url or "") as url:
                if url is None:
                    ok = False
                    continue
                start = time.perf_counter()
                sample = populate(url, args.versions)
                print(f"\n{database}: populated in {time.perf_counter() - start:.1f} s")
                with running_server(home, {"LOREG_DATABASE_URL": url}) as server:
                    met = measure(server, sample, args.requests, args.time_limit, args.rounds)
                verdict = "met" if met else "missed"
                print(f"target: repository page < {TARGET_MS} ms (p99) on {database}: {verdict}")
                ok = ok and met
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
