"""``pull``: download a version into a directory, every file verified against its digest."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import click

from cli.context import AppContext, pass_app
from registry.refs import RepoRef


@click.command()
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write [default: ./<name>].",
)
@click.option(
    "--base", "base_sha", metavar="SHA", help="Refuse unless the adapter was made for this base SHA."
)
@pass_app
def pull(app: AppContext, ref: str, output: Path | None, base_sha: str | None) -> None:
    """Download REF (ns/name[:tag], ns/name@sha256:…, ns/name#N) as a PEFT adapter directory."""
    target = RepoRef.parse(ref)
    client = app.client
    params = {"base": base_sha} if base_sha else None
    version = client.request(
        "GET", f"{client.repo_path(target.repo)}/resolve/{client.ref_segment(target.ref)}", params=params
    )
    output = output or Path(target.repo.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        for entry in version["files"]:
            dest = staging / entry["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download(
                entry["url"], dest, digest=entry["digest"].removeprefix("sha256:"), size=entry["size"]
            )
        _publish(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    app.emit(
        {
            "repo": version["repo"],
            "number": version["number"],
            "digest": version["digest"],
            "output": str(output),
            "files": [f["path"] for f in version["files"]],
        },
        f"pulled {version['repo']}#{version['number']} {version['digest']} into {output}",
    )


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


COMMANDS = [pull]
