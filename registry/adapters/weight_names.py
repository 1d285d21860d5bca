"""Resolve an adapter's module name to its base model's 2-D ``<module>.weight`` tensor name.

One rule, shared by the compatibility check and the merge into the base: the exact ``<module>.weight``,
else the unique weight whose module differs only by a leading dot-separated prefix on either side (base
files often lack or add a prefix such as ``model.``). Pure Python: no torch here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Generic, Protocol, TypeVar


class Shaped(Protocol):
    """Anything with a tensor shape: ``WeightShape``, ``TensorInfo``."""

    @property
    def shape(self) -> tuple[int, ...]: ...


W = TypeVar("W", bound=Shaped)


class WeightIndex(Generic[W]):
    """Looks adapter module names up among a base model's 2-D ``<module>.weight`` tensors."""

    def __init__(self, weights: Mapping[str, W]) -> None:
        """Index ``weights`` (tensor name -> object with a ``.shape``), keeping only the 2-D tensors."""
        self.weights: dict[str, W] = {k: w for k, w in weights.items() if len(w.shape) == 2}
        self._modules = {k.removesuffix(".weight"): k for k in self.weights if k.endswith(".weight")}
        self._by_suffix: dict[str, list[str]] | None = None

    def resolve(self, module: str) -> tuple[str | None, tuple[str, ...]]:
        """(weight key, candidates): the exact ``module.weight``, else the unique dot-boundary suffix match.

        Matching goes both ways, since base files often lack or add a prefix such as ``model.``. The key is
        None when nothing matches (no candidates) or several do.
        """
        exact = self._modules.get(module)
        if exact is not None:
            return exact, (exact,)
        found = set(self._suffix_index().get(module, ()))
        found.update(tail for tail in _dot_suffixes(module) if tail in self._modules)
        candidates = tuple(sorted(self._modules[m] for m in found))
        return (candidates[0] if len(candidates) == 1 else None), candidates

    def near(self, module: str, limit: int = 3) -> list[str]:
        """A few base weights whose module has the same last name as ``module``, for error hints."""
        last = module.rpartition(".")[2]
        return [self._modules[m] for m in sorted(self._suffix_index().get(last, ()))[:limit]]

    def _suffix_index(self) -> dict[str, list[str]]:
        """Dot-boundary suffix of a base module -> the base modules ending with it; built on first use."""
        if self._by_suffix is None:
            self._by_suffix = defaultdict(list)
            for module in self._modules:
                for tail in _dot_suffixes(module):
                    self._by_suffix[tail].append(module)
        return self._by_suffix


def _dot_suffixes(name: str) -> list[str]:
    """The proper suffixes of ``name`` that start after a dot: "a.b.c" -> ["b.c", "c"]."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(1, len(parts))]
