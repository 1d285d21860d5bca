"""Reconciliation, pure: what an engine should do to serve the desired ``{name: digest}``.

The agent owns an adapter when the engine loaded it from this agent's cache,
``<cache>/versions/<64 hex>``: its digest is read from that root. Everything else the engine serves
is foreign, and is left alone unless the agent is told to own the whole engine (``owned_only=False``).

The actions come in a safe order: new names first, then new weights under served names, then the
unloads, so that a versioned name (``repo@<12 hex>``) is dropped only after its successor serves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Load:
    name: str
    digest: str  # 64 hex
    replace: bool = False  # the engine serves the name with other weights: swap them in place


@dataclass(frozen=True)
class Unload:
    name: str


Action = Load | Unload


@dataclass(frozen=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)  # wanted names a foreign adapter holds → its root


def owned_digest(root: str, versions: Path) -> str | None:
    """The digest of an adapter the engine loaded from ``root``, if ``root`` is ``versions/<64 hex>``."""
    path = Path(root)
    return path.name if path.parent == versions and HEX64.fullmatch(path.name) else None


def owned(served: Mapping[str, str], versions: Path) -> dict[str, str]:
    """The agent's adapters among ``served`` (name → root): name → digest."""
    found = {name: owned_digest(root, versions) for name, root in served.items()}
    return {name: digest for name, digest in found.items() if digest is not None}


def plan(
    desired: Mapping[str, str],
    served: Mapping[str, str],
    versions: Path,
    *,
    owned_only: bool = True,
    can_replace: bool = True,
) -> Plan:
    """The actions that take an engine serving ``served`` (name → root) to ``desired`` (name → digest).

    ``can_replace``: the engine swaps a loaded name's weights in one call (vLLM's ``load_inplace``);
    otherwise (SGLang) a name changing digest is unloaded, then loaded again."""
    ours = owned(served, versions)
    new: list[Action] = []
    changed: list[Action] = []
    conflicts: dict[str, str] = {}
    for name, digest in desired.items():
        if name not in served:
            new.append(Load(name, digest))
        elif name not in ours and owned_only:
            conflicts[name] = served[name]
        elif ours.get(name) != digest:
            changed += (
                [Load(name, digest, replace=True)] if can_replace else [Unload(name), Load(name, digest)]
            )
    removed: list[Action] = [
        Unload(name) for name in served if name not in desired and (name in ours or not owned_only)
    ]
    return Plan([*new, *changed, *removed], conflicts)
