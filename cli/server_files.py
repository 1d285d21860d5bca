"""The one check of a resolved version the server sent, made before the client creates anything.

``pull``, ``pull --watch`` and the vLLM resolver call :func:`check_version` on the whole answer first:
each file path must be relative and plain (:func:`registry.refs.validate_file_path`: no absolute path,
``..``, backslash, NUL, drive letter or empty part), listed once, not both a file and a directory, and
land inside the target directory even through symbolic links already there; each digest must be
``sha256:<64 hex>`` and each URL a path on the same server (so the bearer token goes nowhere else).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from registry.errors import InvalidInput
from registry.refs import validate_file_path
from registry.storage.base import SHA256_HEX

_FIELDS = {"path": str, "digest": str, "size": int, "url": str}


def check_version(version: Any, directory: Path | None = None) -> str:
    """Return ``version``'s hex digest if every file in it is safe to write into ``directory``, else
    raise :class:`InvalidInput` naming the first offending entry. Reads the filesystem, writes nothing."""
    where = f"{version.get('repo')}#{version.get('number')}" if isinstance(version, dict) else "a version"
    try:
        if not isinstance(version, dict) or not isinstance(version.get("files"), list):
            raise InvalidInput("the answer has no file list")
        digest = hex_digest(version.get("digest"), "its digest")
        paths = [_check_entry(entry) for entry in version["files"]]
        _check_tree(paths)
        if directory is not None:
            for path in paths:
                _check_inside(path, directory)
    except InvalidInput as exc:
        raise InvalidInput(f"refused {where} from the server, nothing was written: {exc.message}") from None
    return digest


def hex_digest(value: Any, what: str) -> str:
    """The hex of ``value`` if it is ``sha256:<64 lowercase hex>``, else raise :class:`InvalidInput`."""
    hex_part = value.removeprefix("sha256:") if isinstance(value, str) else ""
    if not (isinstance(value, str) and value.startswith("sha256:") and SHA256_HEX.fullmatch(hex_part)):
        raise InvalidInput(f"{what} {value!r} is not sha256:<64 hex digits>")
    return hex_part


def _check_entry(entry: Any) -> str:
    if not isinstance(entry, dict) or any(type(entry.get(key)) is not kind for key, kind in _FIELDS.items()):
        raise InvalidInput(f"file entry {entry!r:.200} is not {{path, digest, size, url}}")
    path = validate_file_path(entry["path"])
    hex_digest(entry["digest"], f"the digest of {path!r}")
    if entry["size"] < 0:
        raise InvalidInput(f"{path!r} has a negative size {entry['size']}")
    url = entry["url"]
    if not url.startswith("/") or url.startswith("//") or "\\" in url:
        raise InvalidInput(f"the URL of {path!r}, {url!r}, is not a path on the registry")
    return path


def _check_tree(paths: list[str]) -> None:
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise InvalidInput(f"file path {path!r} is listed twice")
        seen.add(path)
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) in seen:
                raise InvalidInput(
                    f"file path {path!r} needs {str(parent)!r}, also a file, to be a directory"
                )


def _check_inside(path: str, directory: Path) -> None:
    root = directory.resolve()
    parent = (root / path).parent.resolve()  # the file itself is replaced, never followed
    if not parent.is_relative_to(root):
        raise InvalidInput(
            f"file path {path!r} would be written through a symbolic link to {parent}, outside {directory}"
        )
