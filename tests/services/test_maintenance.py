"""fsck and gc against a real database and blob directory, with each fault injected by hand."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from registry.adapters import CONFIG_FILE, WEIGHTS_FILE
from registry.db.queries import maintenance as queries
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
    with registry.db.transaction() as session:
        return gc(session, registry.store, **options)


def test_a_consistent_registry_is_ok(registry: LocalRegistry, pushed: list[Pushed]) -> None:
    report = run_fsck(registry)
    digests = referenced(pushed)
    assert report.ok, report.to_json()
    assert report.stored == report.recorded == report.referenced == len(digests)
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
        repos.delete_repository(session, RepoName.parse("acme/bot"))
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
