"""Names and references: ``namespace/name``, ``name:tag``, ``name@sha256:<digest>``, ``name#<number>``.

Pure parsing, shared by the services, the API and the CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from registry.errors import InvalidInput

MAX_NAME_LENGTH = 96
MIN_DIGEST_PREFIX = 12
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_HEX = re.compile(r"^[0-9a-f]+$")
DEFAULT_TAG = "latest"


def validate_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid namespace, repository or tag name, else raise."""
    rule = (
        f"{what} names are lowercase letters, digits, '.', '_' and '-', start with a letter or digit, "
        f"and are at most {MAX_NAME_LENGTH} characters"
    )
    if not value:
        raise InvalidInput(f"empty {what} name; {rule}")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{what} name is {len(value)} characters long; {rule}")
    if not _NAME.match(value) or ".." in value:
        shown = value.encode("unicode_escape").decode("ascii")
        raise InvalidInput(f"invalid {what} name {shown!r}; {rule} (no '..')")
    return value


@dataclass(frozen=True, slots=True)
class RepoName:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, value: str) -> RepoName:
        parts = value.split("/")
        if len(parts) != 2:
            raise InvalidInput(
                f"invalid repository {value!r}: expected 'namespace/name', e.g. acme/support-bot"
            )
        return cls(validate_name(parts[0], "namespace"), validate_name(parts[1], "repository"))


MAX_NUMBER = 2**31 - 1  # version numbers, like every integer id, fit a 32-bit column


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to one version inside a repository."""

    kind: Literal["tag", "digest", "number"]
    value: str

    def __str__(self) -> str:
        return {"tag": self.value, "digest": f"sha256:{self.value}", "number": f"#{self.value}"}[self.kind]

    @classmethod
    def parse(cls, value: str) -> Ref:
        """Parse ``tag``, ``sha256:<hex>`` (full or a 12+ hex prefix) or ``#<number>``."""
        if value.startswith("sha256:"):
            return cls.digest(value.removeprefix("sha256:"))
        if value.startswith("#"):
            number = value[1:]
            if not number.isdigit() or not 1 <= int(number) <= MAX_NUMBER:
                raise InvalidInput(
                    f"invalid version number {value!r}: expected '#' and a number from 1 to "
                    f"{MAX_NUMBER}, e.g. #3"
                )
            return cls("number", str(int(number)))
        return cls("tag", validate_name(value, "tag"))

    @classmethod
    def digest(cls, hex_digest: str) -> Ref:
        hex_digest = hex_digest.lower()
        if not _HEX.match(hex_digest) or not MIN_DIGEST_PREFIX <= len(hex_digest) <= 64:
            raise InvalidInput(
                f"invalid digest {hex_digest!r}: expected sha256 hex, full (64) or a prefix of at least "
                f"{MIN_DIGEST_PREFIX} characters"
            )
        return cls("digest", hex_digest)


@dataclass(frozen=True, slots=True)
class RepoRef:
    repo: RepoName
    ref: Ref

    def __str__(self) -> str:
        sep = {"tag": ":", "digest": "@", "number": ""}[self.ref.kind]
        return f"{self.repo}{sep}{self.ref}"

    @classmethod
    def parse(cls, value: str, *, default_tag: str = DEFAULT_TAG) -> RepoRef:
        """Parse ``ns/name``, ``ns/name:tag``, ``ns/name@sha256:<hex>``, ``ns/name@<hex>``, ``ns/name#N``."""
        if "@" in value:
            repo, _, digest = value.partition("@")
            return cls(RepoName.parse(repo), Ref.digest(digest.removeprefix("sha256:")))
        if "#" in value:
            repo, _, number = value.partition("#")
            return cls(RepoName.parse(repo), Ref.parse(f"#{number}"))
        if ":" in value:
            repo, _, tag = value.partition(":")
            return cls(RepoName.parse(repo), Ref("tag", validate_name(tag, "tag")))
        return cls(RepoName.parse(value), Ref("tag", validate_name(default_tag, "tag")))


def validate_file_path(path: str) -> str:
    """Return ``path`` if it is a safe relative file path inside an adapter directory."""
    parts = path.split("/")
    if (
        not path
        or len(path) > 512
        or path.startswith("/")
        or "\\" in path
        or any(part in ("", ".", "..") for part in parts)
        or not all(re.match(r"^[A-Za-z0-9._-]+$", part) for part in parts)
    ):
        raise InvalidInput(
            f"invalid file path {path!r}: use a relative path of letters, digits, '.', '_' and '-' "
            "without '..' (at most 512 characters)"
        )
    return path
