"""Who is calling, and what they may do. Pure: the CLI and the API share it.

Scopes are ordered: ``read`` < ``write`` < ``admin``. A principal may be limited to namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.errors import Forbidden

SCOPES = ("read", "write", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token, or the anonymous caller when auth is off or reads are public."""

    name: str
    scope: str
    namespaces: tuple[str, ...] | None = None
    token_id: int | None = None
    stale_last_use: bool = False  # the token's last_used_at is due for an update (see record_use)

    def require(self, scope: str, namespace: str | None = None) -> None:
        """Raise :class:`Forbidden` unless this principal has ``scope`` (in ``namespace``)."""
        if SCOPES.index(self.scope) < SCOPES.index(scope):
            raise Forbidden(
                f"{self.name} has {self.scope} scope; this needs {scope} (create a token with "
                f"`lorareg token create NAME --scope {scope}`)"
            )
        if namespace is not None and self.namespaces is not None and namespace not in self.namespaces:
            allowed = ", ".join(self.namespaces)
            raise Forbidden(f"{self.name} is limited to namespaces {allowed}, not {namespace}")


ANONYMOUS_ADMIN = Principal(name="anonymous", scope="admin")  # LOREG_AUTH=off: the embedded default
ANONYMOUS_READER = Principal(name="anonymous", scope="read")  # LOREG_ANONYMOUS_READ=true
