"""fsck and gc against a real database and blob directory, with each fault injected by hand."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import JSON, bindparam, text
from sqlalchemy.orm import Session

from registry.adapters import CONFIG_FILE, WEIGHTS_FILE
from registry.db.queries import maintenance as queries
from registry.principal import REGISTRY
from registry.refs import RepoName
from registry.services import maintenance, repos
from registry.services.maintenance import fsck, gc
from tests.conftest import TinyBase
from tests.services.conftest import LocalRegistry, Pushed

DAY = timedelta(days=1)


@pytest.fixture
def pushed(registry: LocalRegistry, tiny_base: TinyBase, adapter_factory) -> list[Pushed]:
    """acme/bot#1 and #2 (two different adapters), and other/bot#1 sharing #1's files."""
    return [
        registry.push("acme/bot", adapter_factory(seed=1), tiny_base),
        registry.push("acme/bot", adapter_factory(seed=2), tiny_base),
        registry.push("other/bot", adapter_factory(seed=1), tiny_base),
    ]


def referenced(pushed: list[Pushed]) -> set[str]:
    return {digest for version in pushed for digest in version.files.values()}


def run_fsck(registry: LocalRegistry) -> maintenance.FsckReport:
    with registry.db.transaction(write=False) as session:
        return fsck(session, registry.store)


def run_gc(registry: LocalRegistry, **options) -> maintenance.GcReport:
    options.setdefault("dry_run", False)
    return gc(registry.db, registry.store, **options)


def test_a_consistent_registry_is_ok(registry: LocalRegistry, pushed: list[Pushed]) -> None:
    report = run_fsck(registry)
    digests = referenced(pushed)
    assert report.ok, report.to_json()
    assert report.stored == report.recorded == report.referenced == len(digests)
    assert report.versions == 3 and report.drift == []
    assert report.bytes_checked == sum(registry.blob_path(d).stat().st_size for d in digests)


def test_a_deleted_blob_is_missing_and_names_its_versions(
    registry: LocalRegistry, pushed: list[Pushed]
) -> None:
    weights = pushed[0].files[WEIGHTS_FILE]
    size = registry.blob_path(weights).stat().st_size
    registry.blob_path(weights).unlink()

    report = run_fsck(registry)
    assert not report.ok
    assert [p.digest for p in report.missing] == [weights]
    assert report.missing[0].referenced_by == ["acme/bot#1", "other/bot#1"]
    assert report.missing[0].size == size and "recorded in the blobs table" in report.missing[0].detail
    assert report.corrupt == [] and report.unreferenced == []
    assert report.to_json()["missing"][0]["digest"] == f"sha256:{weights}"

    removed = run_gc(registry, grace=timedelta(0), now=datetime.now(UTC) + DAY)
    assert removed.removed == [] and registry.has_row(weights)  # still referenced: the row stays


def test_a_flipped_byte_or_a_truncation_is_corrupt(registry: LocalRegistry, pushed: list[Pushed]) -> None:
    config, weights = pushed[1].files[CONFIG_FILE], pushed[1].files[WEIGHTS_FILE]
    path = registry.blob_path(weights)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    registry.blob_path(config).write_bytes(registry.blob_path(config).read_bytes()[:-1])

    report = run_fsck(registry)
    assert not report.ok
    by_digest = {p.digest: p for p in report.corrupt}
    assert set(by_digest) == {config, weights}
    assert "hash to sha256:" in by_digest[weights].detail and "recorded" not in by_digest[weights].detail
    assert "recorded" in by_digest[config].detail
    assert by_digest[weights].referenced_by == ["acme/bot#2"]
    assert report.missing == [] and report.unreferenced == []

    run_gc(registry, grace=timedelta(0), now=datetime.now(UTC) + DAY)
    assert path.exists() and registry.has_row(weights)  # gc never touches a referenced blob


def test_blobs_no_version_references_are_unreferenced(registry: LocalRegistry, pushed: list[Pushed]) -> None:
    lost = b"uploaded, but the push never committed"
    recorded = registry.upload(lost)
    stray = b"in the store without a row"
    stored_only = hashlib.sha256(stray).hexdigest()
    registry.store.ingest(stored_only, [stray], max_size=1024)

    report = run_fsck(registry)
    assert not report.ok and report.missing == [] and report.corrupt == []
    assert {p.digest: p.size for p in report.unreferenced} == {recorded: len(lost), stored_only: len(stray)}
    assert all(p.referenced_by == [] for p in report.unreferenced)
    assert report.stored == len(referenced(pushed)) + 2


def test_gc_removes_orphans_and_stale_uploads_but_never_a_referenced_blob(
    registry: LocalRegistry, pushed: list[Pushed]
) -> None:
    orphan = registry.upload(b"orphan bytes")
    stray = b"stray"
    stored_only = hashlib.sha256(stray).hexdigest()
    registry.store.ingest(stored_only, [stray], max_size=1024)
    abandoned = registry.store.uploads / "0123abandoned"
    abandoned.write_bytes(b"half an upload")
    time.sleep(0.01)  # SQLite's CURRENT_TIMESTAMP has one-second resolution; now() must be later
    before = {d: registry.blob_path(d).read_bytes() for d in referenced(pushed)}

    report = run_gc(registry, grace=timedelta(0), now=datetime.now(UTC) + timedelta(seconds=1))

    assert {b.digest for b in report.removed} == {orphan, stored_only}
    assert report.kept_referenced == [] and report.kept_recent == []
    assert report.bytes_freed == len(b"orphan bytes") + len(stray)
    assert report.uploads_purged == 1 and not abandoned.exists()
    assert not registry.blob_path(orphan).exists() and not registry.has_row(orphan)
    assert not registry.blob_path(stored_only).exists()
    assert {d: registry.blob_path(d).read_bytes() for d in referenced(pushed)} == before
    assert all(registry.has_row(d) for d in referenced(pushed))
    assert run_fsck(registry).ok


def test_gc_dry_run_reports_but_removes_nothing(registry: LocalRegistry, pushed: list[Pushed]) -> None:
    orphan = registry.upload(b"orphan bytes")
    abandoned = registry.store.uploads / "0123abandoned"
    abandoned.write_bytes(b"half an upload")

    report = run_gc(registry, grace=timedelta(0), dry_run=True, now=datetime.now(UTC) + DAY)

    assert [b.digest for b in report.removed] == [orphan] and report.bytes_freed == len(b"orphan bytes")
    assert report.uploads_purged is None and abandoned.exists()
    assert registry.blob_path(orphan).exists() and registry.has_row(orphan)
    assert [p.digest for p in run_fsck(registry).unreferenced] == [orphan]


def test_gc_grace_keeps_a_fresh_orphan_until_it_is_old(registry: LocalRegistry, pushed: list[Pushed]) -> None:
    orphan = registry.upload(b"an upload whose commit is still coming")
    abandoned = registry.store.uploads / "0123inflight"
    abandoned.write_bytes(b"half an upload")

    kept = run_gc(registry, grace=DAY)
    assert kept.removed == [] and kept.kept_recent == [orphan] and kept.uploads_purged == 0
    assert registry.blob_path(orphan).exists() and registry.has_row(orphan) and abandoned.exists()

    later = run_gc(registry, grace=DAY, now=datetime.now(UTC) + DAY + timedelta(minutes=1))
    assert [b.digest for b in later.removed] == [orphan] and later.uploads_purged == 1
    assert not registry.blob_path(orphan).exists() and not registry.has_row(orphan)


def test_reuploading_an_old_orphan_protects_it_again(registry: LocalRegistry, pushed: list[Pushed]) -> None:
    """An old row whose bytes were just written again (a push re-uploading them) is kept."""
    orphan = registry.upload(b"old orphan")
    with registry.db.transaction() as session:
        session.execute(
            text("UPDATE blobs SET created_at = :t WHERE digest = :d"),
            {"t": datetime.now(UTC) - 10 * DAY, "d": orphan},
        )
    report = run_gc(registry, grace=DAY)
    assert report.kept_recent == [orphan] and registry.blob_path(orphan).exists()

    old = time.time() - 5 * 86400
    os.utime(registry.blob_path(orphan), (old, old))
    report = run_gc(registry, grace=DAY)
    assert [b.digest for b in report.removed] == [orphan] and not registry.has_row(orphan)


def test_deleting_a_repository_frees_only_its_own_blobs(
    registry: LocalRegistry, pushed: list[Pushed]
) -> None:
    with registry.db.transaction() as session:
        repos.delete_repository(session, RepoName.parse("acme/bot"), REGISTRY)
    only_acme = set(pushed[1].files.values()) - set(pushed[2].files.values())
    assert only_acme  # the seed-2 adapter's weights and config are acme/bot's alone

    report = run_gc(registry, grace=timedelta(0), now=datetime.now(UTC) + DAY)

    assert {b.digest for b in report.removed} == only_acme
    assert all(registry.blob_path(d).exists() for d in pushed[2].files.values())
    assert run_fsck(registry).ok


def test_a_version_committed_after_gc_listed_references_keeps_its_blob(
    registry: LocalRegistry, pushed: list[Pushed], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc's guarded delete re-checks references: a stale view of them cannot delete a used blob."""
    weights = pushed[0].files[WEIGHTS_FILE]
    monkeypatch.setattr(queries, "referenced_digests", lambda session: set())  # the view before the push

    report = run_gc(registry, grace=timedelta(0), now=datetime.now(UTC) + DAY)

    assert report.removed == []
    assert weights in report.kept_referenced
    assert registry.blob_path(weights).exists() and registry.has_row(weights)
    monkeypatch.undo()
    assert run_fsck(registry).ok


def test_the_guarded_delete_refuses_referenced_rows(registry: LocalRegistry, pushed: list[Pushed]) -> None:
    orphan = registry.upload(b"orphan")
    weights = pushed[0].files[WEIGHTS_FILE]
    with registry.db.transaction() as session:
        assert queries.delete_unreferenced_blob_rows(session, [weights, orphan]) == {orphan}
    assert registry.has_row(weights) and not registry.has_row(orphan)


def version_id(registry: LocalRegistry, label: str) -> int:
    repo, number = label.split("#")
    namespace, name = repo.split("/")
    with registry.db.engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT v.id FROM versions v JOIN repositories r ON r.id = v.repository_id "
                "WHERE r.namespace = :ns AND r.name = :name AND v.number = :n"
            ),
            {"ns": namespace, "name": name, "n": int(number)},
        ).scalar_one()


def set_file_list(registry: LocalRegistry, label: str, edit: Callable[[list], list]) -> None:
    """Rewrite one version's file_list column with ``edit(list) -> list``, behind the services' back."""
    with registry.db.transaction() as session:
        vid = version_id(registry, label)
        current = session.execute(
            text("SELECT file_list FROM versions WHERE id = :id"), {"id": vid}
        ).scalar_one()
        current = json.loads(current) if isinstance(current, str) else current
        statement = text("UPDATE versions SET file_list = :files WHERE id = :id").bindparams(
            bindparam("files", type_=JSON)
        )
        session.execute(statement, {"files": edit(current), "id": vid})


def test_fsck_reports_each_version_whose_file_list_and_file_rows_drifted(
    registry: LocalRegistry, pushed: list[Pushed]
) -> None:
    weights = pushed[0].files[WEIGHTS_FILE]
    with registry.db.transaction() as session:  # acme/bot#1: a version_files row with another size
        session.execute(
            text("UPDATE version_files SET size = size + 1 WHERE version_id = :id AND path = :path"),
            {"id": version_id(registry, "acme/bot#1"), "path": WEIGHTS_FILE},
        )
    # acme/bot#2: file_list lost a file; other/bot#1: file_list names another digest, and an extra file
    set_file_list(registry, "acme/bot#2", lambda files: [f for f in files if f["path"] != CONFIG_FILE])
    other = "ab" * 32
    set_file_list(
        registry,
        "other/bot#1",
        lambda files: (
            [{**f, "digest": other} if f["path"] == CONFIG_FILE else f for f in files]
            + [{"path": "extra.bin", "digest": weights, "size": 7}]
        ),
    )

    report = run_fsck(registry)

    assert not report.ok and report.versions == 3
    assert report.missing == report.corrupt == report.unreferenced == []  # the blobs themselves are fine
    by_version = {d.version: d for d in report.drift}
    assert list(by_version) == ["acme/bot#1", "acme/bot#2", "other/bot#1"]
    assert by_version["acme/bot#1"].digest == pushed[0].digest
    (size,) = by_version["acme/bot#1"].differences
    assert size.startswith(f"{WEIGHTS_FILE}: file_list says sha256:{weights}, ") and "version_files" in size
    assert by_version["acme/bot#2"].differences == [
        f"{CONFIG_FILE}: a version_files row (sha256:{pushed[1].files[CONFIG_FILE]}, "
        f"{registry.blob_path(pushed[1].files[CONFIG_FILE]).stat().st_size} bytes), not in file_list"
    ]
    changed, extra = by_version["other/bot#1"].differences
    assert changed.startswith(f"{CONFIG_FILE}: file_list says sha256:{other}, ")
    assert extra == f"extra.bin: in file_list (sha256:{weights}, 7 bytes), no version_files row"
    assert report.to_json()["drift"][0]["version"] == "acme/bot#1"


def test_lorareg_fsck_names_a_drifted_version_and_exits_1(
    registry: LocalRegistry, pushed: list[Pushed]
) -> None:
    from cli.main import cli

    env = {"LOREG_HOME": str(registry.home), "LOREG_DATABASE_URL": registry.url, "LOREG_BLOB_URL": None}
    clean = CliRunner().invoke(cli, ["fsck"], env=env, catch_exceptions=False)
    assert clean.exit_code == 0 and "fsck: ok" in clean.stdout and "3 versions" in clean.stdout

    set_file_list(registry, "acme/bot#2", lambda files: files[:1])
    result = CliRunner().invoke(cli, ["fsck"], env=env, catch_exceptions=False)

    assert result.exit_code == 1
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("drift ")]
    assert line.startswith(f"drift acme/bot#2 (sha256:{pushed[1].digest}): ")
    assert "not in file_list" in line
    assert "1 drifted versions" in result.stdout


class RowCheckingStore:
    """The registry's store; each delete first notes whether the blob's row was gone (committed) by then."""

    def __init__(self, registry: LocalRegistry) -> None:
        self._registry = registry
        self.deleted: dict[str, bool] = {}  # digest → whether another connection still saw its row

    def delete(self, digest: str) -> None:
        self.deleted[digest] = self._registry.has_row(digest)
        self._registry.store.delete(digest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry.store, name)


def test_gc_deletes_bytes_only_once_their_rows_are_deleted_and_committed(
    registry: LocalRegistry, pushed: list[Pushed]
) -> None:
    orphans = {registry.upload(b"orphan one"), registry.upload(b"orphan two")}
    store = RowCheckingStore(registry)

    report = gc(registry.db, store, grace=timedelta(0), dry_run=False, now=datetime.now(UTC) + DAY)

    assert {b.digest for b in report.removed} == orphans
    assert store.deleted == dict.fromkeys(orphans, False)
    assert not any(registry.blob_path(d).exists() or registry.has_row(d) for d in orphans)


def test_a_blob_recorded_again_after_gc_deleted_its_row_keeps_its_bytes(
    registry: LocalRegistry, pushed: list[Pushed], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push uploads the blob between gc's row delete and its byte delete: the bytes stay."""
    data = b"an old orphan a push is uploading again"
    orphan = registry.upload(data)
    real_claim = queries.claim_blob

    def upload_then_claim(session: Session, digest: str, size: int) -> bool:
        assert not registry.has_row(digest)  # gc deleted (and committed) the row first
        registry.upload(data)  # the push: bytes, then the row (committed)
        return real_claim(session, digest, size)

    monkeypatch.setattr(queries, "claim_blob", upload_then_claim)
    report = run_gc(registry, grace=timedelta(0), now=datetime.now(UTC) + DAY)

    assert report.removed == [] and report.kept_recent == [orphan]
    assert registry.has_row(orphan) and registry.blob_path(orphan).read_bytes() == data


def test_a_claim_makes_writers_recording_the_blob_wait(registry: LocalRegistry) -> None:
    """While gc holds a claim on a digest (deleting its bytes), a push recording it waits for it."""
    digest = hashlib.sha256(b"claimed").hexdigest()
    recorded = threading.Event()

    def record() -> None:
        registry.upload(b"claimed")
        recorded.set()

    with registry.db.writer() as session:
        assert queries.claim_blob(session, digest, 7)
        recorder = threading.Thread(target=record)
        recorder.start()
        assert not recorded.wait(0.5)  # queued behind the claim
        session.rollback()
    recorder.join(timeout=10)
    assert recorded.is_set() and registry.has_row(digest)
    with registry.db.writer() as session:
        assert not queries.claim_blob(session, digest, 7)  # a recorded blob cannot be claimed
        session.rollback()
