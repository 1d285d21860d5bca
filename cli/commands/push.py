"""``push``: upload an adapter directory (only missing blobs), then commit it as a version."""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Mapping
from pathlib import Path

import click

from cli.context import AppContext, pass_app
from registry.adapters import CONFIG_FILE, WEIGHTS_FILE
from registry.adapters.safetensors_header import parse_header
from registry.errors import InvalidInput
from registry.refs import DEFAULT_TAG, BaseSpec, RepoRef

BASE_HELP = "NAME (of one base), NAME@SHA, a SHA (40 or 64 hex) or a 12+ hex prefix."


def directory_files(directory: Path) -> dict[str, Path]:
    """The files to push: every regular file under ``directory`` except hidden ones."""
    return {
        path.relative_to(directory).as_posix(): path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    }


def adapter_files(directory: Path) -> dict[str, Path]:
    """The files of a PEFT adapter directory; refuse one without its config or weights."""
    files = directory_files(directory)
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if required not in files:
            raise InvalidInput(
                f"{directory} has no {required}; a PEFT LoRA adapter directory holds "
                f"{CONFIG_FILE} and {WEIGHTS_FILE} (save it with model.save_pretrained(dir))"
            )
    return files


def ci_provenance(env: Mapping[str, str]) -> dict[str, str]:
    """What the CI system running this push says about it (GitHub Actions, GitLab CI)."""
    if env.get("GITHUB_ACTIONS") == "true" or env.get("GITHUB_SHA"):
        found = {"ci": "github-actions", "git_commit": env.get("GITHUB_SHA", "")}
        if env.get("GITHUB_REPOSITORY"):
            server = env.get("GITHUB_SERVER_URL", "https://github.com")
            found["git_repository"] = f"{server}/{env['GITHUB_REPOSITORY']}"
            if env.get("GITHUB_RUN_ID"):
                found["ci_run_url"] = (
                    f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
                )
        return {k: v for k, v in found.items() if v}
    if env.get("GITLAB_CI") == "true" or env.get("CI_COMMIT_SHA"):
        found = {
            "ci": "gitlab-ci",
            "git_commit": env.get("CI_COMMIT_SHA", ""),
            "git_repository": env.get("CI_PROJECT_URL", ""),
            "ci_run_url": env.get("CI_JOB_URL", ""),
        }
        return {k: v for k, v in found.items() if v}
    return {}


def parse_provenance(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--provenance key=value`` options."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"{pair!r}: use key=value, e.g. source=hf://org/repo@rev", param_hint="--provenance"
            )
        found[key] = value
    return found


def parse_base(value: str | None) -> str | None:
    """``--base`` as given, for the server to resolve (it owns the rule); refused here only when no base
    could answer to it, with the message the server would give."""
    if value is not None:
        BaseSpec.parse(value)
    return value


def check_headers(files: dict[str, Path], names: list[str]) -> None:
    """Refuse a truncated or invalid safetensors file among ``names`` before anything is uploaded, with
    the message the server would give."""
    for name in names:
        with files[name].open("rb") as handle:
            descriptor = handle.fileno()
            parse_header(functools.partial(_read_at, descriptor), os.fstat(descriptor).st_size, filename=name)


def _read_at(descriptor: int, offset: int, length: int) -> bytes:
    return os.pread(descriptor, length, offset)


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("target")
@click.option(
    "--base", "base", metavar="BASE", help=f"The base model [default: from {CONFIG_FILE}]. {BASE_HELP}"
)
@click.option("-m", "--message", help="What changed in this version.")
@click.option("--tag", "tags", multiple=True, help="Also point this tag at the version (repeatable).")
@click.option("--no-latest", is_flag=True, help=f"Do not move '{DEFAULT_TAG}' to this version.")
@click.option("--author", help="Author to record [default: the current user].")
@click.option(
    "--model",
    "is_model",
    is_flag=True,
    help="DIRECTORY is a full model (safetensors + config.json) derived from --base, not an adapter.",
)
@click.option(
    "--provenance",
    "provenance",
    multiple=True,
    metavar="KEY=VALUE",
    help="Where this adapter comes from (repeatable); CI runs are recorded automatically.",
)
@pass_app
def push(
    app: AppContext,
    directory: Path,
    target: str,
    base: str | None,
    message: str | None,
    tags: tuple[str, ...],
    no_latest: bool,
    author: str | None,
    is_model: bool,
    provenance: tuple[str, ...],
) -> None:
    """Push the PEFT adapter in DIRECTORY as a new version of TARGET (ns/name[:tag])."""
    ref = RepoRef.parse(target)
    if ref.ref.kind != "tag":
        raise click.BadParameter("push to ns/name or ns/name:tag", param_hint="TARGET")
    client = app.client
    files = directory_files(directory) if is_model else adapter_files(directory)
    base = parse_base(base)
    check_headers(
        files, [name for name in files if name.endswith(".safetensors")] if is_model else [WEIGHTS_FILE]
    )
    entries, uploaded = client.upload_files(files)
    explicit_tags = [ref.ref.value] if ":" in target else []
    body = {
        "kind": "model" if is_model else "adapter",
        "files": entries,
        "base": base,
        "message": message,
        "author": author or getpass.getuser(),
        "tags": [*explicit_tags, *tags],
        "update_latest": not no_latest,
        "provenance": {**ci_provenance(os.environ), **parse_provenance(provenance)},
    }
    result = client.request("POST", f"{client.repo_path(ref.repo)}/versions", json=body)
    app.emit(
        {
            "repo": result["repo"],
            "number": result["number"],
            "digest": result["digest"],
            "tags": result["tags"],
            "created": result["created"],
            "uploaded_files": uploaded.files,
            "uploaded_bytes": uploaded.bytes,
            "warnings": result.get("warnings", []),
        },
        f"{'pushed' if result['created'] else 'unchanged:'} {result['repo']}#{result['number']} "
        f"{result['digest']} (tags: {', '.join(result['tags']) or '-'}; uploaded {uploaded.bytes} bytes)",
    )
    if not app.as_json:
        for warning in result.get("warnings", []):  # the model card: never a refusal, but worth fixing
            click.echo(f"warning: {warning}", err=True)


COMMANDS = [push]
