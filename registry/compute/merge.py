"""Merge N LoRA adapters of one base into one PEFT adapter.

Every ``combination_type`` of PEFT 0.21's ``LoraModel.add_weighted_adapter`` gives PEFT's result on the
same inputs, plus ``sum`` (the exact Σ wᵢ·sᵢ·Bᵢ·Aᵢ). Where PEFT is wrong we are right (docs/merging.md):
the merged config never keeps ``use_rslora``; svd types never double-scale; DARE masks come from a seed.

Work is done one module at a time on ``device`` in fp32, whatever the stored dtype:
- ``sum``, ``cat`` concatenate factors; ``svd`` truncates the concatenation through its fp64 Gram cores
  (``lowrank.factored_svd``) and never forms the d×k update;
- ``linear``, ``ties``, ``dare_*``, ``magnitude_prune`` combine the A's and the B's separately (PEFT's
  definition, cross terms included);
- ``*_svd`` need the dense update: each adapter's ΔW is formed, pruned and folded into one accumulator in
  turn (TIES: twice, electing the sign first), in place in a few buffers reused from module to module, so
  memory stays at a few copies of one module; large modules are then truncated by randomized subspace
  iteration run until it has converged to the exact truncation (``lowrank.truncated_svd``). Unpruned
  (density 1) ``magnitude_prune_svd``/``dare_linear_svd`` are Σ wᵢΔWᵢ and go the ``svd`` way.
Every output module has the same rank and scale 1 (``lora_alpha == r``, zero-padded where a module
needs fewer), so any LoRA loader reads it, not only PEFT's ``rank_pattern``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from registry.compute.device import COMPUTE_DTYPE
from registry.compute.lora import IncompatibleAdapters, LoraAdapter, LoraModule, carry_saved
from registry.compute.lowrank import (
    difference_norm,
    factored_svd,
    one_thread,
    squared_norm,
    squared_residual,
    truncate,
    truncated_svd,
)
from registry.compute.methods import MAJORITY_SIGN_METHODS, METHODS

_FACTORWISE = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
_SVD = ("svd", "ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")
_DENSITY = tuple(m for m in METHODS if m.startswith(("ties", "dare", "magnitude")))
_CONFIG_SCOPE = ("layers_to_transform", "layers_pattern", "exclude_modules")
_QUANTILE_LIMIT = 1 << 24  # torch.quantile refuses larger inputs
_SELECT_BAND_FROM = 1 << 20  # entries from which _kth_largest selects in a sampled band
_SELECT_SAMPLE = 1 << 16  # entries (at least) in its sample


@dataclass
class MergeResult:
    adapter: LoraAdapter
    report: dict[str, Any]


def merge_adapters(
    adapters: Sequence[LoraAdapter],
    weights: Sequence[float],
    method: str,
    *,
    svd_rank: int | None = None,
    svd_clamp: float | None = None,
    density: float | None = None,
    majority_sign_method: str = "total",
    seed: int | None = None,
    device: torch.device | str = "cpu",
) -> MergeResult:
    """Merge ``adapters`` (same base) with ``weights`` by ``method`` (one of :data:`METHODS`).

    A module missing from an adapter contributes zero. ``seed`` fixes DARE's random masks (one drawn if
    None, and reported). Raises ``ValueError`` for bad parameters and ``IncompatibleAdapters`` for inputs
    that cannot be merged."""
    started = time.perf_counter()
    weights = [float(w) for w in weights]
    _check_params(adapters, weights, method, svd_rank, svd_clamp, density, majority_sign_method)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    _check_adapters(adapters)
    device = torch.device(device)
    if method.startswith("dare") and seed is None:
        seed = secrets.randbits(63)
    names = sorted({name for adapter in adapters for name in adapter.modules})
    members = {name: _members(adapters, name) for name in names}
    rank = _output_rank(method, adapters, members, svd_rank)

    merger = _Merger(method, weights, density, majority_sign_method, seed, svd_clamp, device)
    modules: dict[str, LoraModule] = {}
    errors: dict[str, float] = {}
    for name in names:
        B, A, error = merger.merge(name, members[name], rank)
        first = members[name][0][1]
        modules[name] = LoraModule(
            A=A.to("cpu"),
            B=B.to("cpu"),
            scale=1.0,
            kind=first.kind,
            transposed_in_base=first.transposed_in_base,
        )
        if error is not None:
            errors[name] = error

    adapter = LoraAdapter(modules=modules, config=_output_config(adapters, names, rank))
    carry_saved(adapters, adapter)  # the modules_to_save every input shares (_check_adapters: or refused)
    report = _report(method, weights, density, majority_sign_method, svd_rank, svd_clamp, seed, adapters)
    report.update(rank=rank, modules=len(modules), dtype="float32", device=str(device))
    if method in _SVD:
        values = list(errors.values())
        report["truncation_error"] = {
            "max": max(values),
            "mean": sum(values) / len(values),
            "per_module": errors,
        }
        report["svd_solvers"] = {solver: n for solver, n in merger.solvers.items() if n}
    report["seconds"] = round(time.perf_counter() - started, 4)
    return MergeResult(adapter=adapter, report=report)


def mask_generator(seed: int, module: str, slot: str, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator DARE draws one mask from (``dare_mask``): for adapter ``i`` of the inputs, ``slot`` is
    ``f"W{i}"`` for its dense update (the ``*_svd`` types) or ``f"A{i}"``/``f"B{i}"`` for its factors. Each
    mask depends only on (seed, module, slot), not on which other modules are merged or in which order."""
    digest = hashlib.sha256(f"{seed}\0{module}\0{slot}".encode()).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return generator


def dare_mask(
    shape: Sequence[int], density: float, generator: torch.Generator, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """DARE's mask for a task tensor of ``shape``: 1.0 where a uniform draw from ``generator`` (one per
    entry, in row-major order) is below ``density``, else 0.0; fp32, in ``out`` if given. The same law as
    PEFT's ``torch.bernoulli(full_like(t, density))``, drawn ~5× faster (33 ms against 163 ms for 11M
    entries on CPU); ``tests/compute/test_merge.py`` replays these masks into PEFT to compare."""
    uniform = torch.rand(
        tuple(shape), generator=generator, dtype=COMPUTE_DTYPE, device=generator.device, out=out
    )
    return uniform.lt_(density)


# Checks --------------------------------------------------------------------------------------------------


def _check_params(
    adapters: Sequence[LoraAdapter],
    weights: list[float],
    method: str,
    svd_rank: int | None,
    svd_clamp: float | None,
    density: float | None,
    majority_sign_method: str,
) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; choose one of {', '.join(METHODS)}")
    if not adapters:
        raise ValueError("nothing to merge: pass at least one adapter")
    if len(weights) != len(adapters):
        raise ValueError(f"{len(adapters)} adapters but {len(weights)} weights; pass one weight per adapter")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be finite numbers, got {weights}")
    if majority_sign_method not in MAJORITY_SIGN_METHODS:
        raise ValueError(
            f"majority_sign_method must be one of {', '.join(MAJORITY_SIGN_METHODS)}, "
            f"got {majority_sign_method!r}"
        )
    if method in _DENSITY:
        if density is None:
            raise ValueError(f"method {method!r} needs a density in (0, 1] (the fraction of entries kept)")
        if isinstance(density, bool) or not (isinstance(density, int | float) and 0 < density <= 1):
            raise ValueError(f"density must be in (0, 1] (the fraction of entries kept), got {density!r}")
    elif density is not None:
        raise ValueError(f"density applies to {', '.join(_DENSITY)}; method {method!r} takes none")
    if method not in _SVD:
        for option, value in (("svd_rank", svd_rank), ("svd_clamp", svd_clamp)):
            if value is not None:
                raise ValueError(f"{option} applies to {', '.join(_SVD)}; method {method!r} takes none")
    if svd_rank is not None and (isinstance(svd_rank, bool) or not isinstance(svd_rank, int) or svd_rank < 1):
        raise ValueError(f"svd_rank must be an integer >= 1, got {svd_rank!r}")
    if svd_clamp is not None and not (isinstance(svd_clamp, int | float) and 0 < svd_clamp <= 1):
        raise ValueError(f"svd_clamp is a quantile in (0, 1], got {svd_clamp!r}")


def _check_adapters(adapters: Sequence[LoraAdapter]) -> None:
    bases = [adapter.base_model for adapter in adapters]
    if len(set(bases)) > 1:
        shown = "; ".join(f"adapter {i}: {name}@{rev}" for i, (name, rev) in enumerate(bases))
        raise IncompatibleAdapters(
            f"the adapters name different base models ({shown}); merge only adapters of the same base "
            "(base_model_name_or_path and revision)"
        )
    for i, adapter in enumerate(adapters):
        config = adapter.config
        if adapter.peft_type != "LORA":
            raise IncompatibleAdapters(
                f"adapter {i} is a {adapter.peft_type} adapter; merge combines LoRA adapters only "
                "(merge-base merges an IA3 or LoHa adapter into its base model)"
            )
        if config.get("use_dora") or adapter.dora:
            raise IncompatibleAdapters(
                f"adapter {i} cannot be merged: it is a DoRA adapter, whose magnitude vectors rescale each "
                "merged weight, so it cannot be combined as LoRA factors; merge it into its base with "
                "merge-base (then extract a LoRA from the merged model), or merge adapters trained without "
                "use_dora"
            )
        if config.get("lora_bias") or any(m.bias is not None for m in adapter.modules.values()):
            raise IncompatibleAdapters(
                f"adapter {i} cannot be merged: it trains a bias on lora_B (lora_bias), which a merged LoRA "
                "cannot weight like its factors; merge it into its base with merge-base instead"
            )
        if config.get("bias", "none") not in ("none", None):
            raise IncompatibleAdapters(
                f"adapter {i} cannot be merged: it trains biases (bias={config['bias']!r}), "
                "which a merged LoRA cannot carry"
            )
        if not adapter.modules:
            raise IncompatibleAdapters(f"adapter {i} has no LoRA modules")
        first = adapters[0]
        if adapter.saved.keys() != first.saved.keys() or not all(
            torch.equal(tensor, first.saved[name]) for name, tensor in adapter.saved.items()
        ):
            differ = sorted(
                name
                for name in adapter.saved.keys() | first.saved.keys()
                if name not in adapter.saved
                or name not in first.saved
                or not torch.equal(adapter.saved[name], first.saved[name])
            )
            raise IncompatibleAdapters(
                f"adapters 0 and {i} save different modules_to_save tensors ({', '.join(differ[:5])}): a "
                "merge carries full module copies only when every input has the same ones; merge each into "
                "its base with merge-base instead"
            )
        for name, module in adapter.modules.items():
            if module.A.ndim != 2 or module.B.ndim != 2 or module.A.shape[0] != module.B.shape[1]:
                raise IncompatibleAdapters(
                    f"adapter {i}, module {name}: lora_A {tuple(module.A.shape)} and lora_B "
                    f"{tuple(module.B.shape)} are not (r, in) and (out, r)"
                )


def _members(adapters: Sequence[LoraAdapter], name: str) -> list[tuple[int, LoraModule]]:
    found = [(i, adapter.modules[name]) for i, adapter in enumerate(adapters) if name in adapter.modules]
    i0, first = found[0]
    for i, module in found[1:]:
        same = (module.shape, module.kind, module.transposed_in_base) == (
            first.shape,
            first.kind,
            first.transposed_in_base,
        )
        if not same:
            raise IncompatibleAdapters(
                f"module {name} differs between adapters: adapter {i0} has a {first.kind} update of shape "
                f"{first.shape} (fan_in_fan_out={first.transposed_in_base}), adapter {i} has a {module.kind} "
                f"update of shape {module.shape} (fan_in_fan_out={module.transposed_in_base}); "
                "they cannot be for the same base model"
            )
    return found


def _output_rank(
    method: str,
    adapters: Sequence[LoraAdapter],
    members: dict[str, list[tuple[int, LoraModule]]],
    svd_rank: int | None,
) -> int:
    """The rank of every output module (PEFT's ``new_rank``; ``sum``: the widest module's Σ rᵢ)."""
    max_ranks = [max(module.rank for module in adapter.modules.values()) for adapter in adapters]
    if method == "cat":
        return sum(max_ranks)
    if method == "sum":
        return max(sum(module.rank for _, module in found) for found in members.values())
    if method in _SVD:
        return svd_rank or max(max_ranks)
    for name, found in members.items():
        ranks = {i: module.rank for i, module in found}
        if len(set(ranks.values())) > 1:
            shown = ", ".join(f"adapter {i}: r={r}" for i, r in ranks.items())
            raise IncompatibleAdapters(
                f"method {method!r} merges the A and B factors entry by entry, so it needs one rank per "
                f"module, but {name} has {shown}; use sum, cat or an svd method for different ranks"
            )
    return max(max_ranks)


# The per-module math -------------------------------------------------------------------------------------


class _Workspace:
    """Scratch tensors kept from one module to the next (by name and dtype, grown to the largest): a fresh
    45 MB tensor page-faults on its first write, ~20 ms on a 2-core VM, several times per module."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = device
        self.flat: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def take(
        self, name: str, like: torch.Tensor | tuple[int, ...], dtype: torch.dtype = COMPUTE_DTYPE
    ) -> torch.Tensor:
        """Tensor ``name`` (contents undefined) shaped and strided like ``like``: a row-major tensor or
        the transpose of one; a shape means row-major."""
        transposed = isinstance(like, torch.Tensor) and _transposed(like)
        if isinstance(like, torch.Tensor):
            like = tuple(like.T.shape if transposed else like.shape)
        numel = math.prod(like)
        flat = self.flat.pop((name, dtype), None)
        if flat is None or flat.numel() < numel:
            del flat  # the smaller one goes before the larger one comes
            flat = torch.empty(numel, dtype=dtype, device=self.device)
        self.flat[(name, dtype)] = flat
        tensor = flat[:numel].view(like)
        return tensor.T if transposed else tensor


@dataclass
class _Keep:
    """Which entries of a task tensor survive pruning: all, those with ``|t| > shrink`` (a threshold's
    float32 predecessor, so ``|t| >= threshold``), or a mask (DARE's, or a top-k where the threshold is
    tied; bool where it is kept for TIES's second pass), and DARE's rescaling by 1/density."""

    shrink: float | None = None
    mask: torch.Tensor | None = None
    rescale: float | None = None

    def apply_(self, t: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
        """Prune ``t`` in place; ``scratch``: fp32, shaped and strided like ``t``. (Arithmetic between
        fp32 and bool tensors runs ~5× slower than between two fp32 ones: a bool mask is copied first.)"""
        if self.mask is not None:
            t.mul_(scratch.copy_(self.mask) if self.mask.dtype == torch.bool else self.mask)
        elif self.shrink is not None:
            torch.ops.aten.hardshrink.out(t, self.shrink, out=t)  # t where |t| > shrink, else 0: one pass
        return t.div_(self.rescale) if self.rescale is not None else t


def _magnitude_keep(t: torch.Tensor, density: float, magnitudes: torch.Tensor, space: _Workspace) -> _Keep:
    """PEFT's ``magnitude_based_pruning``: keep the ``int(density·n)`` largest |entries| (``torch.topk``).
    The k-th largest value as a threshold finds the same set ~5× faster (``_kth_largest``); where entries
    tie at it, tensors under ``_SELECT_BAND_FROM`` entries take ``torch.topk``'s own set (same values, same
    order: the same tie-break as PEFT's)."""
    k = int(density * t.numel())
    if k == 0:
        return _Keep(mask=torch.zeros_like(t, dtype=torch.bool))
    values = _flat(torch.abs(t, out=magnitudes))
    flags = (_flat(space.take("above", t, torch.bool)), _flat(space.take("inside", t, torch.bool)))
    threshold, tied = _kth_largest(values, k, flags)
    if not tied:
        below = torch.nextafter(threshold, torch.zeros_like(threshold))
        return _Keep(shrink=float(below))
    if t.numel() < _SELECT_BAND_FROM:  # topk's nth_element decides the set; sorted=False skips its sort
        chosen = torch.topk(t.abs().reshape(-1), k=k, largest=True, sorted=False).indices
        mask = torch.zeros(t.numel(), dtype=torch.bool, device=t.device)
        mask[chosen] = True
        return _Keep(mask=mask.reshape(t.shape))
    # topk would hold 16 bytes per entry (250 MB for 11M) to break the tie as PEFT's does; here the first
    # tied entries in memory order are kept instead: which of some equal-magnitude entries survive is a
    # difference far below what the randomized truncation of such a module leaves anyway
    mask = torch.empty_like(t, dtype=torch.bool)
    flat = _flat(mask)
    torch.gt(values, threshold, out=flat)
    need = k - int(torch.count_nonzero(flat))
    flat[torch.nonzero(values == threshold).view(-1)[:need]] = True
    return _Keep(mask=mask)


def _kth_largest(
    values: torch.Tensor, k: int, flags: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, bool]:
    """The k-th largest of the 1-D ``values`` (a 0-d tensor, exactly ``torch.kthvalue``'s) and whether
    other entries equal it (so that ``values >= it`` holds more than k). ``flags``: two bool scratch
    tensors shaped like ``values`` (allocated if None).

    Large inputs select in a narrow band: a strided sample brackets the k-th largest between two of its
    values, two counts over all entries prove the bracket (else the full ``kthvalue`` runs), and only the
    entries inside it (~2%) go through ``kthvalue``: a few streaming passes instead of a full selection."""
    n = values.numel()
    position = n - k + 1  # kthvalue's 1-based ascending rank of the k-th largest
    if n >= _SELECT_BAND_FROM:
        sample = values[:: n // _SELECT_SAMPLE]
        size = sample.numel()
        middle, margin = position / n * size, 3 * math.sqrt(size)  # 6σ of a sample quantile's rank
        # python floats (exact for fp32 values): comparisons with a scalar run ~2× faster than with a tensor
        low = float(torch.kthvalue(sample, max(math.floor(middle - margin), 1)).values)
        high = float(torch.kthvalue(sample, min(math.ceil(middle + margin), size)).values)
        if flags is None:
            flags = torch.empty_like(values, dtype=torch.bool), torch.empty_like(values, dtype=torch.bool)
        outside, inside = flags
        above = int(torch.count_nonzero(torch.gt(values, high, out=outside)))
        at_least = int(torch.count_nonzero(torch.ge(values, low, out=inside)))
        if above < k <= at_least:
            band = values[inside.logical_and_(outside.logical_not_())]
            threshold = torch.kthvalue(band, band.numel() - (k - above) + 1).values
            return threshold, above + int(torch.count_nonzero(band >= threshold)) != k
    threshold = torch.kthvalue(values, position).values
    return threshold, int(torch.count_nonzero(values >= threshold)) != k


def _transposed(t: torch.Tensor) -> bool:
    """``t`` is the transpose of a row-major matrix (and not row-major itself)."""
    return t.dim() == 2 and not t.is_contiguous() and t.T.is_contiguous()


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of ``t``'s entries in memory order (a row-major matrix or its transpose; else a copy)."""
    return t.T.reshape(-1) if _transposed(t) else t.reshape(-1)


def _combine(
    method: str,
    tensors: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    shape: tuple[int, ...],
    weights: Sequence[float],
    density: float | None,
    majority_sign_method: str,
    generators: Sequence[Callable[[], torch.Generator]],
    workspace: _Workspace,
) -> torch.Tensor:
    """PEFT's ``merge_utils`` (task_arithmetic, magnitude_prune, ties, dare_linear, dare_ties) on task
    tensors written one at a time by ``tensors[j](out)`` into one fp32 buffer ``out`` of ``shape`` (the
    task tensor returned may be a view of it, e.g. its transpose), recomputed when TIES needs a second
    look. ``method`` is the combination type without ``_svd``.

    Every step runs in place in a few buffers from ``workspace``, each shaped and strided like the task
    tensor: the buffer, one scratch, the sum (and TIES's elected signs and counts), so a merge of N
    updates holds 3-5 of them (and TIES with DARE N bool masks), not N. The result is the workspace's
    ``merged``: valid until the workspace's next use."""
    # PEFT multiplies by torch.tensor(weights): fp32-rounded weights
    weights = [float(w) for w in torch.tensor(list(weights), dtype=torch.float32)]
    prune = None if method == "linear" or (density or 0) >= 1 else method.split("_")[0]
    ties = method.endswith("ties")
    buffer = workspace.take("buffer", shape)
    layout = tensors[0](buffer)  # the task tensors' layout: the buffer's, or its transpose's
    scratch = workspace.take("scratch", layout)
    keeps: list[_Keep] = []

    def task(j: int, again: bool = False) -> torch.Tensor:
        """Task tensor j, pruned (``again``: as the first time, its pruning remembered from then)."""
        t = layout if j == 0 and not again else tensors[j](buffer)
        chosen = keeps[j] if again else keep(j, t)
        if ties and not again:
            keeps.append(chosen)
        return chosen.apply_(t, scratch)

    def keep(j: int, t: torch.Tensor) -> _Keep:
        if prune == "dare":
            mask = dare_mask(t.shape, density, generators[j](), out=workspace.take("uniform", tuple(t.shape)))
            return _Keep(mask=mask.bool() if ties else mask, rescale=density)
        if prune in ("ties", "magnitude"):
            return _magnitude_keep(t, density, scratch, workspace)
        return _Keep()

    merged = workspace.take("merged", layout)
    if not ties:
        merged.zero_()
        for j in range(len(tensors)):
            merged.add_(task(j), alpha=weights[j])
        return merged

    # TIES: elect a sign per entry from the pruned (unweighted) tensors, then average the weighted
    # entries that agree with it: with s = ±1 the elected sign, Σ wⱼ·max(s·tⱼ, 0) / #{j: s·tⱼ > 0}, times s.
    signs = workspace.take("signs", layout).zero_()
    for j in range(len(tensors)):
        t = task(j)
        signs.add_(t if majority_sign_method == "total" else torch.sign(t, out=scratch))
    signs = signs.ge_(0).mul_(2).sub_(1)  # where(votes >= 0, 1, -1)
    merged.zero_()
    count = workspace.take("count", layout).zero_()
    for j in range(len(tensors)):
        t = task(j, again=True).mul_(signs)
        count.add_(torch.gt(t, 0, out=scratch))  # fp32 1/0: the entries that agree
        merged.add_(t.clamp_(min=0), alpha=weights[j])
    return merged.mul_(signs).div_(count.clamp_(min=1.0))


def _canonical_signs(B: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each (column of B, row of A) pair so that the column's largest-|.| entry is positive: SVD
    signs are otherwise arbitrary, and svd_clamp's quantile depends on them."""
    if B.shape[1] == 0:
        return B, A
    rows = B.abs().argmax(dim=0)
    signs = torch.sign(B[rows, torch.arange(B.shape[1], device=B.device)])
    signs[signs == 0] = 1
    return B * signs, A * signs[:, None]


def _clamp(B: torch.Tensor, A: torch.Tensor, quantile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PEFT's svd_clamp: clip both factors to ± the ``quantile`` of all their entries."""
    values = torch.cat([B.flatten(), A.flatten()])
    if values.numel() <= _QUANTILE_LIMIT:
        high = torch.quantile(values, quantile)
    else:  # torch.quantile's own linear interpolation, through kthvalue
        position = float(torch.tensor(quantile, dtype=values.dtype) * (values.numel() - 1))
        below, above = math.floor(position), math.ceil(position)
        low_value = torch.kthvalue(values, below + 1).values
        high_value = torch.kthvalue(values, above + 1).values
        high = torch.lerp(low_value, high_value, position - below)
    return B.clamp(-high, high), A.clamp(-high, high)


def _pad(B: torch.Tensor, A: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (or cut) to exactly ``rank``: zero columns of B and rows of A add nothing to ΔW."""
    have = B.shape[1]
    if have >= rank:
        return B[:, :rank].contiguous(), A[:rank].contiguous()
    return (
        torch.cat([B, B.new_zeros(B.shape[0], rank - have)], dim=1),
        torch.cat([A, A.new_zeros(rank - have, A.shape[1])], dim=0),
    )


class _Merger:
    def __init__(
        self,
        method: str,
        weights: list[float],
        density: float | None,
        majority_sign_method: str,
        seed: int | None,
        svd_clamp: float | None,
        device: torch.device,
    ) -> None:
        self.method = method
        self.weights = weights
        self.density = density
        self.majority = majority_sign_method
        self.seed = seed
        self.clamp = svd_clamp
        self.device = device
        self.solvers = {"factored": 0, "exact": 0, "randomized": 0}  # modules truncated by each SVD
        self.workspace = _Workspace(device)  # the dense types' buffers, from module to module

    def merge(
        self, name: str, found: list[tuple[int, LoraModule]], rank: int
    ) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """(B, A, relative truncation error or None) of module ``name``, B·A being its merged ΔW."""
        loaded = [
            (i, module.B.to(self.device, COMPUTE_DTYPE), module.A.to(self.device, COMPUTE_DTYPE), module)
            for i, module in found
        ]
        method = self.method
        if method in ("sum", "cat"):
            scaled = [self.weights[i] * module.scale for i, _, _, module in loaded]
            if method == "sum":  # design §8: the scale on B
                B = torch.cat([b * s for (_, b, _, _), s in zip(loaded, scaled, strict=True)], dim=1)
                A = torch.cat([a for _, _, a, _ in loaded], dim=0)
            else:  # PEFT's layout: A·weight·scaling, B as is
                A = torch.cat([a * self.weights[i] * m.scale for i, _, a, m in loaded], dim=0)
                B = torch.cat([b for _, b, _, _ in loaded], dim=1)
            return (*_pad(B, A, rank), None)
        if method in _FACTORWISE:
            return (*_pad(*self._factorwise(name, loaded), rank), None)
        if method == "svd":
            return self._factored_svd(loaded, rank, self.weights)
        if method in ("magnitude_prune_svd", "dare_linear_svd") and (self.density or 0) >= 1:
            # no pruning: the merge is PEFT's task_arithmetic Σ wᵢΔWᵢ (fp32 weights), low-rank as it is
            return self._factored_svd(loaded, rank, [float(torch.tensor(w)) for w in self.weights])
        return self._dense_svd(name, loaded, rank)

    def _factored_svd(
        self, loaded: list, rank: int, weights: Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The best rank-``rank`` factors of Σ wᵢsᵢBᵢAᵢ from its stacked factors, never dense: fp64
        Gram cores, (d + k)·(Σr)² work, exact for free (lowrank.factored_svd)."""
        self.solvers["factored"] += 1
        with one_thread():  # milliseconds of work (lowrank.one_thread)
            # stacked in fp64, B as the transpose of a row-major Bᵀ (what factored_svd multiplies fastest)
            total_rank = sum(a.shape[0] for _, _, a, _ in loaded)
            Bt = torch.empty(total_rank, loaded[0][1].shape[0], dtype=torch.float64, device=self.device)
            A = torch.empty(total_rank, loaded[0][2].shape[1], dtype=torch.float64, device=self.device)
            start = 0
            for i, b, a, m in loaded:
                rows = slice(start, start + a.shape[0])
                Bt[rows].copy_(b.T).mul_(weights[i] * m.scale)
                A[rows].copy_(a)
                start = rows.stop
            B = Bt.T
            svd = factored_svd(B, A, rank=rank)
            B_r, A_r, error = truncate(svd, rank)
            B_r, A_r = _canonical_signs(B_r.to(COMPUTE_DTYPE), A_r.to(COMPUTE_DTYPE))
            if self.clamp is not None:
                B_r, A_r = _clamp(B_r, A_r, self.clamp)
                total = float(torch.linalg.vector_norm(svd.S))
                error = float(difference_norm(B, A, B_r.double(), A_r.double())) / total if total > 0 else 0.0
            return (*_pad(B_r, A_r, rank), error)

    def _generator(self, name: str, slot: str) -> Callable[[], torch.Generator]:
        return lambda: mask_generator(self.seed, name, slot, self.device)

    def _factorwise(self, name: str, loaded: list) -> tuple[torch.Tensor, torch.Tensor]:
        """PEFT's linear/ties/dare/magnitude_prune: A's and B's combined separately with √|w·s| each (the
        sign on A): ΔW' = (Σ √|wᵢsᵢ|·Bᵢ)(Σ ±√|wᵢsᵢ|·Aᵢ) for ``linear``, cross terms included."""
        weights_A, weights_B = [], []
        for i, _, _, module in loaded:
            scaled = self.weights[i] * module.scale
            sign = 1 if scaled >= 0 else -1
            weights_A.append(math.sqrt(abs(scaled)) * sign)
            weights_B.append(math.sqrt(abs(scaled)))
        base = self.method
        A = _combine(
            base,
            [lambda out, a=a: out.copy_(a) for _, _, a, _ in loaded],
            tuple(loaded[0][2].shape),
            weights_A,
            self.density,
            self.majority,
            [self._generator(name, f"A{i}") for i, *_ in loaded],
            _Workspace(self.device),  # fresh: the result lives on in the output
        )
        B = _combine(
            base,
            [lambda out, b=b: out.copy_(b) for _, b, _, _ in loaded],
            tuple(loaded[0][1].shape),
            weights_B,
            self.density,
            self.majority,
            [self._generator(name, f"B{i}") for i, *_ in loaded],
            _Workspace(self.device),
        )
        return B, A

    def _dense_svd(self, name: str, loaded: list, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The element-wise merge of the dense updates (in the base's orientation, as PEFT's
        ``get_delta_weight``), then the best rank-``rank`` factors of the result (exact for small modules,
        randomized subspace iteration for large ones: ``lowrank.truncated_svd``)."""

        def delta(out: torch.Tensor, b: torch.Tensor, a: torch.Tensor, module: LoraModule) -> torch.Tensor:
            product = torch.mm(b, a, out=out).mul_(module.scale)
            return product.T if module.transposed_in_base else product

        first = loaded[0][3]
        merged = _combine(
            self.method.removesuffix("_svd"),
            [lambda out, b=b, a=a, m=m: delta(out, b, a, m) for _, b, a, m in loaded],
            first.shape,
            [self.weights[i] for i, *_ in loaded],
            self.density,
            self.majority,
            [self._generator(name, f"W{i}") for i, *_ in loaded],
            self.workspace,  # reused by the next module: done with merged before then
        )
        if first.transposed_in_base:
            merged = merged.T  # back to (out, in)
        truncation = truncated_svd(merged, rank)
        self.solvers[truncation.solver] += 1
        B_r, A_r = _canonical_signs(truncation.B, truncation.A)
        error = truncation.error
        if self.clamp is not None:
            B_r, A_r = _clamp(B_r, A_r, self.clamp)
            total = squared_norm(merged)
            error = math.sqrt(squared_residual(merged, B_r, A_r) / total) if total > 0 else 0.0
        return (*_pad(B_r, A_r, rank), error)


# The output config and the report -----------------------------------------------------------------------


def _output_config(adapters: Sequence[LoraAdapter], names: list[str], rank: int) -> dict[str, Any]:
    """The first adapter's config with PEFT's merged-adapter fields (r = lora_alpha = rank, no patterns,
    target_modules the union) and what PEFT forgets: ``use_rslora`` off (the factors carry every scale),
    plain LoRA init, and an explicit module list where the inputs' layer scoping differs."""
    config = copy.deepcopy(adapters[0].config)
    config.update(
        r=rank,
        lora_alpha=rank,
        rank_pattern={},
        alpha_pattern={},
        use_rslora=False,
        use_dora=False,
        init_lora_weights=True,
    )
    scopes = {repr([adapter.config.get(key) for key in _CONFIG_SCOPE]) for adapter in adapters}
    if len(scopes) > 1:  # one adapter's layers_to_transform/exclude_modules must not hide another's modules
        config["target_modules"] = list(names)
        for key in _CONFIG_SCOPE:
            config[key] = None
    else:
        config["target_modules"] = _target_union(adapters)
    return config


def _target_union(adapters: Sequence[LoraAdapter]) -> list[str] | str:
    """PEFT's union of ``target_modules``: a sorted list of names, or ``(re1)|(re2)`` for regexes; a mix
    (which PEFT refuses) becomes one regex with the names as PEFT matches them (the name or ``….name``)."""
    values: list[list[str] | str] = []
    for adapter in adapters:
        value = adapter.config.get("target_modules")
        if value is None:
            value = sorted({name.rsplit(".", 1)[-1] for name in adapter.modules})
        values.append(value)
    if all(isinstance(value, list) for value in values):
        return sorted({name for value in values for name in value})
    regexes = []
    for value in values:
        if isinstance(value, str):
            regexes.append(value)
        else:
            regexes.append(rf"(.*\.)?({'|'.join(re.escape(name) for name in sorted(value))})")
    unique = list(dict.fromkeys(regexes))
    return unique[0] if len(unique) == 1 else "|".join(f"({regex})" for regex in unique)


def _report(
    method: str,
    weights: list[float],
    density: float | None,
    majority_sign_method: str,
    svd_rank: int | None,
    svd_clamp: float | None,
    seed: int | None,
    adapters: Sequence[LoraAdapter],
) -> dict[str, Any]:
    params: dict[str, Any] = {"weights": weights}
    if method in _DENSITY:
        params["density"] = density
    if method.endswith(("ties", "ties_svd")):
        params["majority_sign_method"] = majority_sign_method
    if method in _SVD:
        params.update(svd_rank=svd_rank, svd_clamp=svd_clamp)
    if method.startswith("dare"):
        params["seed"] = seed
    notes = []
    if any(adapter.config.get("use_rslora") for adapter in adapters):
        notes.append(
            "inputs use rsLoRA; their scales are folded into the factors and the output has "
            "use_rslora=false (PEFT 0.21 keeps it, making its merged update √r too large)"
        )
    return {"method": method, "params": params, "inputs": len(adapters), "notes": notes}
