"""Who is calling, and what they may do: the one authorization rule. Pure: the CLI and the API share it.

Scopes are ordered: ``read`` < ``write`` < ``admin``. A principal may be limited to namespaces, and
then acts only inside them, as an admin too. Repositories are ``private`` (read by their namespace's
tokens) or ``public`` (read by anyone, anonymous callers included). The services ask the questions
below with the repository in hand; the API only says who is calling.

| action                                  | who                                                   |
| --------------------------------------- | ----------------------------------------------------- |
| read a repository (resolve, pull, /hf)  | anyone if public; else a token of its namespace       |
| write it (push, tag, yank, visibility)  | a write token of its namespace                        |
| delete it                               | an admin token of its namespace                       |
| tokens, webhooks, audit of a namespace  | an admin token of that namespace                      |
| base models, gc, global webhooks, audit | an unrestricted admin token                           |
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime

from registry.errors import Forbidden, NotFound, RegistryError, Unauthorized

SCOPES = ("read", "write", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token, the anonymous caller, or the registry itself (jobs, operators)."""

    name: str
    scope: str
    namespaces: tuple[str, ...] | None = None  # None: every namespace
    token_id: int | None = None
    expires_at: datetime | None = None  # the token's expiry, if it has one
    anonymous: bool = False  # no token: reads public repositories only, and changes nothing
    reads_private: bool = False  # an anonymous caller that reads private repositories too
    stale_last_use: bool = False  # the token's last_used_at is due for an update (see record_use)

    @property
    def unrestricted(self) -> bool:
        """Not limited to namespaces (an anonymous caller always is)."""
        return self.namespaces is None and not self.anonymous

    @property
    def readable_namespaces(self) -> tuple[str, ...] | None:
        """The namespaces whose private repositories this principal reads (None: all of them)."""
        if self.anonymous:
            return None if self.reads_private else ()
        return self.namespaces

    def has_scope(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def in_namespace(self, namespace: str) -> bool:
        return not self.anonymous and (self.namespaces is None or namespace in self.namespaces)

    def can_read(self, namespace: str, visibility: str) -> bool:
        """Whether this principal may read a repository of ``namespace`` with ``visibility``."""
        return visibility == "public" or self.reads_private or self.in_namespace(namespace)

    def require(self, scope: str, namespace: str | None = None) -> None:
        """Raise :class:`Forbidden` unless this principal has ``scope`` (in ``namespace``); an anonymous
        caller gets :class:`Unauthorized` (it needs a token first)."""
        if self.anonymous:
            raise Unauthorized(
                "this registry requires a token for that: pass --token, set LOREG_TOKEN or `lorareg "
                "login` (without one, only public repositories can be read)"
            )
        if not self.has_scope(scope):
            raise Forbidden(
                f"{self.name} has {self.scope} scope; this needs {scope} (create a token with "
                f"`lorareg token create NAME --scope {scope}`)"
            )
        if namespace is not None and not self.in_namespace(namespace):
            raise Forbidden(f"{self.name} is limited to namespaces {self._limits()}, not {namespace}")

    def require_unrestricted(self, scope: str, what: str) -> None:
        """Raise unless this principal has ``scope`` in every namespace (``what`` is global)."""
        self.require(scope)
        if not self.unrestricted:
            raise Forbidden(
                f"{what} concerns every namespace: it needs a {scope} token that is not limited to "
                f"namespaces, and {self.name} is limited to {self._limits()}"
            )

    def cannot_see(self, repo: str) -> RegistryError:
        """The error for a repository this principal may not read, worded the same whether or not it
        exists, so that a refusal never confirms a private repository's existence."""
        if self.anonymous:
            return Unauthorized(
                f"repository {repo} is not public or does not exist; reading private repositories "
                "requires a token (--token, LOREG_TOKEN or `lorareg login`)"
            )
        limits = f" ({self.name} is limited to namespaces {self._limits()})" if self.namespaces else ""
        return NotFound(f"repository {repo} does not exist or is not readable with this token{limits}")

    def covers(self, namespaces: tuple[str, ...] | list[str] | None) -> bool:
        """Whether every namespace of ``namespaces`` (None: all of them) is one of this principal's."""
        if self.unrestricted:
            return True
        return (
            not self.anonymous
            and namespaces is not None
            and len(namespaces) > 0
            and set(namespaces) <= set(self.namespaces or ())
        )

    def _limits(self) -> str:
        return ", ".join(self.namespaces or ()) or "(none)"


ANONYMOUS_ADMIN = Principal(name="anonymous", scope="admin")  # LOREG_AUTH=off: the embedded default
ANONYMOUS_READER = Principal(name="anonymous", scope="read", anonymous=True)  # no token: public reads
# LOREG_ANONYMOUS_READ=true: callers without a token read every repository, private ones too.
OPEN_READER = Principal(name="anonymous", scope="read", anonymous=True, reads_private=True)
REGISTRY = Principal(name="lorareg", scope="admin")  # the registry's own work: jobs, the bootstrap token


def operator() -> Principal:
    """Whoever runs an operator command (``gc``) where the database is: the audit trail's actor."""
    return Principal(name=f"operator:{getpass.getuser()}", scope="admin")
