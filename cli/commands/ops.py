"""``fsck`` and ``gc``: operator commands that run against the local settings, not over HTTP.

Run them where the server's configuration is (the container, a Kubernetes job): they open the
database (``LOREG_DATABASE_URL``) and the blob store (``LOREG_BLOB_URL``) directly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.context import AppContext, pass_app
from cli.durations import DURATION
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.db.session import Database
    from registry.services.maintenance import FsckReport, GcReport
    from registry.storage import BlobStore

EXIT_INCONSISTENT = 1


@contextmanager
def local_registry(app: AppContext) -> Iterator[tuple[Database, BlobStore]]:
    """The database and blob store named by the local settings; refuse an unmigrated database."""
    from sqlalchemy.engine import make_url

    from registry.db import migrate
    from registry.db.session import Database
    from registry.storage import open_blob_store

    url = app.settings.resolved_database_url
    shown = make_url(url).render_as_string(hide_password=True)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise InvalidInput(
            f"no registry database at {shown}; run this where the server's settings are "
            "(LOREG_DATABASE_URL, or LOREG_HOME for the embedded default)"
        )
    current, head = migrate.current_revision(url), migrate.head_revision(url)
    if current != head:
        raise InvalidInput(
            f"the database {shown} is at migration {current or '(none)'}, not {head}; "
            "run `lorareg db upgrade` first"
        )
    database = Database.connect(url)
    try:
        yield database, open_blob_store(app.settings.resolved_blob_url, app.settings)
    finally:
        database.dispose()


@click.command()
@pass_app
def fsck(app: AppContext) -> None:
    """Check the database against the blob store; exit 1 on any missing, corrupt or unreferenced blob,
    or a version whose file list (what resolve serves) and file rows (what gc keeps) disagree.

    Every stored blob is read and rehashed.
    """
    from registry.services import maintenance

    with local_registry(app) as (database, store), database.transaction(write=False) as session:
        report = maintenance.fsck(session, store)
    app.emit(report.to_json(), _fsck_text(report))
    if not report.ok:
        sys.exit(EXIT_INCONSISTENT)


def _fsck_text(report: FsckReport) -> str:
    lines = []
    for kind, problems in (
        ("missing", report.missing),
        ("corrupt", report.corrupt),
        ("unreferenced", report.unreferenced),
    ):
        for problem in problems:
            size = "" if problem.size is None else f" ({problem.size} bytes)"
            users = f"; used by {', '.join(problem.referenced_by)}" if problem.referenced_by else ""
            lines.append(f"{kind} sha256:{problem.digest}{size}: {problem.detail}{users}")
    for drift in report.drift:
        lines.append(f"drift {drift.version} (sha256:{drift.digest}): {'; '.join(drift.differences)}")
    checked = (
        f"checked {report.stored} stored blobs ({report.bytes_checked} bytes), {report.recorded} rows, "
        f"{report.referenced} referenced, {report.versions} versions"
    )
    if report.ok:
        lines.append(f"fsck: ok, {checked}")
    else:
        lines.append(
            f"fsck: {len(report.missing)} missing, {len(report.corrupt)} corrupt, "
            f"{len(report.unreferenced)} unreferenced, {len(report.drift)} drifted versions; {checked}"
        )
        if report.missing or report.corrupt:
            lines.append("push the affected versions' files again, or restore the blobs from a backup")
        if report.unreferenced:
            lines.append("unreferenced blobs are removed by `lorareg gc` once older than its grace period")
        if report.drift:
            lines.append(
                "a drifted version's file list and file rows disagree: its manifest (which its digest "
                "hashes) says which is right; restore the other from a backup"
            )
    return "\n".join(lines)


@click.command()
@click.option(
    "--grace",
    type=DURATION,
    default="24h",
    show_default=True,
    help="Keep unreferenced blobs and uploads younger than this (s, m, h, d, w; e.g. 30m, 7d).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@pass_app
def gc(app: AppContext, grace: timedelta, dry_run: bool) -> None:
    """Remove blobs no version references and abandoned uploads, once older than --grace.

    The grace period protects pushes in flight (their blobs are uploaded before the version that
    references them is committed): keep it longer than the longest push.
    """
    from registry.principal import operator
    from registry.services import audit, maintenance

    if grace < timedelta(minutes=10) and not dry_run:
        click.echo(
            f"warning: --grace {int(grace.total_seconds())}s may remove the blobs of a push in progress",
            err=True,
        )
    with local_registry(app) as (database, store):
        report = maintenance.gc(database, store, grace=grace, dry_run=dry_run)
        if not dry_run:
            with database.transaction() as session:
                audit.record(
                    session,
                    operator(),
                    "gc",
                    target=app.settings.resolved_blob_url,
                    detail={"removed": len(report.removed), "bytes_freed": report.bytes_freed},
                )
    app.emit(report.to_json(), _gc_text(report))


def _gc_text(report: GcReport) -> str:
    verb = "would remove" if report.dry_run else "removed"
    lines = []
    for blob in report.removed:
        where = "blob and row" if blob.recorded and blob.stored else ("row" if blob.recorded else "blob")
        lines.append(
            f"{verb} sha256:{blob.digest} ({blob.size} bytes, {where}, last written "
            f"{blob.last_written:%Y-%m-%d %H:%M:%S}Z)"
        )
    uploads = (
        "abandoned uploads are not counted in a dry run"
        if report.uploads_purged is None
        else f"purged {report.uploads_purged} abandoned uploads"
    )
    lines.append(
        f"gc: {verb} {len(report.removed)} blobs, {'would free' if report.dry_run else 'freed'} "
        f"{report.bytes_freed} bytes; {uploads}; kept {len(report.kept_recent)} unreferenced blobs "
        f"written after {report.cutoff:%Y-%m-%d %H:%M:%S}Z"
    )
    if report.kept_referenced:
        lines.append(f"gc: kept {len(report.kept_referenced)} blobs a version referenced meanwhile")
    return "\n".join(lines)


COMMANDS = [fsck, gc]
