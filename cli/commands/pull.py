"""``pull``: download a version into a directory, every file verified against its digest.

Pulls go through the client's content-addressed cache (:mod:`cli.cache`, ``LOREG_CACHE``): blobs
already cached are not fetched again, and the output files are hard links to the cached blobs. Each
pull records which repository it wrote into DIR in ``<cache>/pulls/`` (not in DIR, which holds the
version's files only); a non-empty DIR without such a record for the same repository is refused unless
``--force``, before anything is fetched or written.

``pull REF:TAG --watch -o DIR`` keeps DIR in step with the tag. DIR is then a symbolic link to
``DIR.versions/<digest>``, a complete version directory; on each tag move the new version is pulled
into a staging directory next to it, renamed to ``DIR.versions/<digest>``, and DIR is switched by
renaming a new symlink over it (``os.replace``, atomic on POSIX). A reader that opens
``DIR/<file>`` therefore sees either the old version or the new one, never a mix or a half-written
file. The previous version is kept (a reader may still be loading it); older ones are removed.

Nothing the server sends is trusted: each answer's whole file list is checked
(:func:`cli.server_files.check_version`) before any file or directory is created, and each blob is
verified against its digest before it becomes visible. A version that fails the check is refused
(exit 1); under ``--watch`` the watcher stops, DIR still pointing at the last good version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import httpx

from cli.cache import BlobCache
from cli.client import ApiError, RegistryClient
from cli.context import AppContext, pass_app
from cli.server_files import check_version
from registry.errors import InvalidInput
from registry.refs import RepoRef

WATCH_TIMEOUT = 30


@click.command()
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write [default: ./<name>].",
)
@click.option(
    "--base", "base_sha", metavar="BASE", help="Refuse unless the adapter was made for this base model."
)
@click.option(
    "--force",
    is_flag=True,
    help="Pull into DIR even when it is not empty and holds no previous pull of this repository "
    "(files of the same names are replaced, others left).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep pulling: follow the tag, swapping DIR (a symlink to DIR.versions/<digest>) atomically "
    "on each move. Stop with Ctrl-C.",
)
@click.option(
    "--watch-count",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --watch: exit after N updates (for scripts and tests).",
)
@pass_app
def pull(
    app: AppContext,
    ref: str,
    output: Path | None,
    base_sha: str | None,
    force: bool,
    watch: bool,
    watch_count: int | None,
) -> None:
    """Download REF (ns/name[:tag], ns/name@sha256:…, ns/name#N) as a PEFT adapter directory.

    DIR must be new, empty or a previous pull of the same repository by this client, unless --force."""
    target = RepoRef.parse(ref)
    client = app.client
    cache = BlobCache(app.settings.cache)
    output = output or Path(target.repo.name)
    if watch_count is not None and not watch:
        raise click.UsageError("--watch-count needs --watch")
    if watch:
        if target.ref.kind != "tag":
            raise click.UsageError("--watch follows a tag: give REF as ns/name:tag")
        _watch(app, client, cache, target, output, base_sha, watch_count)
        return
    if not force:
        _check_output(output, str(target.repo), cache)
    version = client.resolve(target, base_sha)
    check_version(version, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        fetched = client.fetch_version(version, staging, cache=cache)
        _publish(staging, output)
        _record_pull(cache, output, version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    app.emit(
        {**_summary(version, output), "fetched_files": fetched},
        f"pulled {version['repo']}#{version['number']} {version['digest']} into {output}",
    )


def _check_output(output: Path, repo: str, cache: BlobCache) -> None:
    """Refuse a non-empty ``output`` that is not a previous pull of ``repo``; touch nothing."""
    entries = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    if not entries or _pulled_repo(cache, output) == repo:
        return
    shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
    raise InvalidInput(
        f"{output} is not empty ({shown}) and is not a pull of {repo}; pull into a new or empty directory, "
        "or pass --force to write the files into it"
    )


def _pull_record(cache: BlobCache, output: Path) -> Path:
    """Where a pull into ``output`` is recorded: ``<cache>/pulls/<sha256 of its absolute path>.json``."""
    return cache.root / "pulls" / f"{hashlib.sha256(str(output.resolve()).encode()).hexdigest()}.json"


def _record_pull(cache: BlobCache, output: Path, version: dict[str, Any]) -> None:
    record = _pull_record(cache, output)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"path": str(output.resolve()), **_summary(version, output)}))


def _pulled_repo(cache: BlobCache, output: Path) -> str | None:
    """The repository the last pull into ``output`` wrote, if this client recorded one."""
    try:
        repo = json.loads(_pull_record(cache, output).read_text())["repo"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return repo if isinstance(repo, str) else None


def _summary(version: dict[str, Any], output: Path) -> dict[str, Any]:
    return {
        "repo": version["repo"],
        "number": version["number"],
        "digest": version["digest"],
        "output": str(output),
        "files": [f["path"] for f in version["files"]],
    }


def _publish(staging: Path, output: Path) -> None:
    """Move the verified files into ``output``: a rename when it is new, file by file otherwise."""
    if not output.exists():
        os.replace(staging, output)
        return
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            dest = output / path.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)


# --watch ----------------------------------------------------------------------------------------


def _watch(
    app: AppContext,
    client: RegistryClient,
    cache: BlobCache,
    target: RepoRef,
    output: Path,
    base_sha: str | None,
    watch_count: int | None,
) -> None:
    if output.exists() and not output.is_symlink():
        raise click.UsageError(
            f"{output} exists and is not a symlink; --watch manages DIR as a symlink to "
            f"{output.name}.versions/<digest>: pick a new -o"
        )
    versions = output.parent / f"{output.name}.versions"
    watch_path = f"{client.repo_path(target.repo)}/tags/{target.ref.value}/watch"

    version = client.resolve(target, base_sha)
    _switch(client, cache, version, output, versions)
    _report(app, "pulled", version, output)
    current, updates = version["digest"], 0
    try:
        while watch_count is None or updates < watch_count:
            try:
                moved = client.request(
                    "GET",
                    watch_path,
                    params={"since": current, "timeout": WATCH_TIMEOUT},
                    timeout=httpx.Timeout(WATCH_TIMEOUT + 30, connect=10.0),
                )
            except httpx.TransportError as exc:
                click.echo(f"warning: {exc}; retrying in 2 s", err=True)
                time.sleep(2)
                continue
            if moved is None or moved["digest"] == current:  # 304: the tag did not move
                continue
            target_digest = RepoRef.parse(f"{target.repo}@{moved['digest']}")
            try:
                version = client.resolve(target_digest, base_sha)
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                click.echo(f"warning: not following {target} to {moved['digest']}: {exc.message}", err=True)
                current = moved["digest"]
                continue
            _switch(client, cache, version, output, versions)
            current, updates = version["digest"], updates + 1
            _report(app, "updated", version, output)
    except KeyboardInterrupt:
        click.echo(f"stopped watching {target}; {output} holds {current}", err=True)


def _report(app: AppContext, event: str, version: dict[str, Any], output: Path) -> None:
    """One line per event: JSON Lines under ``--json``."""
    if app.as_json:
        click.echo(json.dumps({"event": event, **_summary(version, output)}))
    else:
        click.echo(f"{event} {version['repo']}#{version['number']} {version['digest']} into {output}")
    sys.stdout.flush()


def _switch(
    client: RegistryClient, cache: BlobCache, version: dict[str, Any], output: Path, versions: Path
) -> None:
    """Make ``output`` point at a complete copy of ``version``, atomically (see the module docstring)."""
    hex_digest = check_version(version)  # into a new staging directory: no symlinks there to follow
    final = versions / hex_digest
    if not final.is_dir():
        versions.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{hex_digest[:12]}.", dir=versions))
        try:
            client.fetch_version(version, staging, cache=cache)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    previous = os.readlink(output) if output.is_symlink() else None
    link = output.parent / f".{output.name}.{os.getpid()}.link"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(versions.name) / hex_digest, target_is_directory=True)
    os.replace(link, output)
    keep = {hex_digest} | ({Path(previous).name} if previous else set())
    for old in versions.iterdir():
        if old.name not in keep and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)


COMMANDS = [pull]
