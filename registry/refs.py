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
_REF_SEPARATORS = "/:@#"
RELATIVE_FORMS = "expected a tag, sha256:<hex> or @<hex> (12+ hex characters), or #<number>"
FULL_FORMS = "ns/name, ns/name:tag, ns/name@sha256:<hex>, ns/name@<12+ hex> or ns/name#<number>"

# Namespaces no new repository may have: the web UI's own pages live at these paths (``/jobs``, …).
RESERVED_NAMESPACES = frozenset(
    {"api", "hf", "bases", "jobs", "audit", "login", "logout", "static", "docs", "redoc", "metrics"}
    | {"health", "healthz", "readyz", "search", "settings"}
)


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
        raise InvalidInput(f"invalid {what} name {_shown(value)!r}; {rule} (no '..')")
    return value


def _shown(value: str) -> str:
    """``value`` with non-ASCII characters escaped, so that a look-alike shows what it is."""
    return value.encode("unicode_escape").decode("ascii")


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
        """Parse ``tag``, ``sha256:<hex>`` or ``@<hex>`` (full or a 12+ hex prefix), or ``#<number>``."""
        if value.startswith(("sha256:", "@")):
            return cls.digest(value.removeprefix("@").removeprefix("sha256:"))
        if value.startswith("#"):
            number = value[1:]
            if not number.isdigit() or not 1 <= int(number) <= MAX_NUMBER:
                raise InvalidInput(
                    f"invalid version number {value!r}: expected '#' and a number from 1 to "
                    f"{MAX_NUMBER}, e.g. #3"
                )
            return cls("number", str(int(number)))
        if any(c in value for c in _REF_SEPARATORS):
            raise InvalidInput(f"invalid ref {_shown(value)!r}: {RELATIVE_FORMS} within the repository")
        return cls("tag", validate_name(value, "tag"))

    @classmethod
    def parse_short(cls, value: str) -> Ref:
        """A ref as the web pages' URLs and forms write it: a bare number is a version number (``3`` is
        ``#3``); anything else as :meth:`parse` takes it."""
        return cls.parse(f"#{value}" if value.isdigit() else value)

    @classmethod
    def parse_in(cls, value: str, repo: RepoName) -> Ref:
        """A version of ``repo``, named relatively (:meth:`parse`) or by a full ref of ``repo`` itself
        (``ns/name:tag``, ``ns/name@…``, ``ns/name#N``); another repository's is refused."""
        if "/" not in value:
            return cls.parse(value)
        full = RepoRef.parse(value, default_tag="")
        if full.repo != repo:
            raise InvalidInput(
                f"{_shown(value)!r} names a version of another repository, {full.repo}; give a version "
                f"of {repo} (e.g. #3, v1, @<hex> or {repo}#3)"
            )
        return full.ref

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
        """Parse ``ns/name``, ``ns/name:tag``, ``ns/name@sha256:<hex>``, ``ns/name@<hex>``, ``ns/name#N``
        (``default_tag=""``: a bare ``ns/name`` is refused)."""
        try:
            return cls._parse(value, default_tag)
        except InvalidInput as exc:
            shown = _shown(value)
            raise InvalidInput(f"invalid ref {shown!r} (expected {FULL_FORMS}): {exc.message}") from None

    @classmethod
    def _parse(cls, value: str, default_tag: str) -> RepoRef:
        if "@" in value:
            repo, _, digest = value.partition("@")
            return cls(RepoName.parse(repo), Ref.digest(digest.removeprefix("sha256:")))
        if "#" in value:
            repo, _, number = value.partition("#")
            return cls(RepoName.parse(repo), Ref.parse(f"#{number}"))
        if ":" in value:
            repo, _, tag = value.partition(":")
            return cls(RepoName.parse(repo), Ref("tag", validate_name(tag, "tag")))
        if not default_tag:
            raise InvalidInput("it names a repository, not a version of it")
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


MAX_BASE_NAME_LENGTH = 256
BASE_FORMS = (
    "NAME (of exactly one base), NAME@SHA, or a SHA alone: a 40-hex Hugging Face commit, the 64-hex "
    f"content digest (also sha256:<hex>), or a prefix of {MIN_DIGEST_PREFIX}+ hex of either"
)


def validate_base_name(value: str) -> str:
    """Return ``value`` if it can name a base model: 1 to 256 printable characters, no '@' (it separates
    NAME@SHA), and not 12+ hex (that reads as a SHA prefix)."""
    if (
        not 1 <= len(value) <= MAX_BASE_NAME_LENGTH
        or not value.isprintable()
        or "@" in value
        or (len(value) >= MIN_DIGEST_PREFIX and _HEX.match(value.lower()))
    ):
        raise InvalidInput(
            f"invalid base model name {_shown(value)!r}: a name is 1 to {MAX_BASE_NAME_LENGTH} printable "
            f"characters, without '@' and not {MIN_DIGEST_PREFIX}+ hex, e.g. meta-llama/Llama-3.1-8B; a base "
            f"is named by {BASE_FORMS}"
        )
    return value


@dataclass(frozen=True, slots=True)
class BaseSpec:
    """How a caller names a base model: any of ``BASE_FORMS``. Parsing only; the registry resolves it."""

    name: str | None
    sha: str | None  # lowercase hex, whole or a prefix
    content_only: bool = False  # written sha256:<hex>: only a content digest answers to it

    @property
    def exact(self) -> bool:
        """The SHA is a whole one (40 or 64 hex), not a prefix."""
        return self.sha is not None and len(self.sha) in ((64,) if self.content_only else (40, 64))

    def __str__(self) -> str:
        sha = f"{'sha256:' if self.content_only else ''}{self.sha}" if self.sha else None
        return "@".join(part for part in (self.name, sha) if part)

    @classmethod
    def parse(cls, value: str) -> BaseSpec:
        name, at, after = value.rpartition("@")
        if not at:
            sha = _base_sha(value)
            return cls(None, *sha) if sha else cls(validate_base_name(value), None)
        sha = _base_sha(after)
        if sha is None:
            raise InvalidInput(
                f"invalid base {_shown(value)!r}: NAME@SHA ends in a SHA; a base is {BASE_FORMS}"
            )
        return cls(validate_base_name(name), *sha)


def _base_sha(value: str) -> tuple[str, bool] | None:
    """``value`` as (lowercase hex, content digest only) when it is written as a SHA, else None (a name)."""
    content_only = value.startswith("sha256:")
    hex_digits = value.removeprefix("sha256:").lower()
    if not content_only and (len(hex_digits) < MIN_DIGEST_PREFIX or not _HEX.match(hex_digits)):
        return None
    if not _HEX.match(hex_digits) or not MIN_DIGEST_PREFIX <= len(hex_digits) <= 64:
        raise InvalidInput(
            f"invalid base SHA {_shown(value)!r}: expected {MIN_DIGEST_PREFIX} to 64 hex characters; a base "
            f"is {BASE_FORMS}"
        )
    return hex_digits, content_only
