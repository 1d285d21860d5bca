"""``Cache-Control`` for what never changes (a version named by digest, a blob): shared caches may keep
it only when anyone may read it and the request carried no token; otherwise it is ``private``."""

from __future__ import annotations

from registry.principal import Principal

YEAR = 31536000


def immutable(principal: Principal, visibility: str) -> str:
    """Cache-Control for immutable content of a repository with ``visibility``, read by ``principal``."""
    shared = visibility == "public" and principal.token_id is None
    return f"{'public' if shared else 'private'}, max-age={YEAR}, immutable"
