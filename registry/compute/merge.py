"""Merge N LoRA adapters of one base into one PEFT adapter.

Every ``combination_type`` of PEFT 0.21's ``LoraModel.add_weighted_adapter`` gives PEFT's result on the
same inputs, plus ``sum`` (the exact Σ wᵢ·sᵢ·Bᵢ·Aᵢ). Where PEFT is wrong we are right (docs/merging.md):
the merged config never keeps ``use_rslora``; svd types never double-scale; DARE masks come from a seed.

Work is done one module at a time on ``device`` in fp32, whatever the stored dtype:
- ``sum``, ``cat`` concatenate factors; ``svd`` truncates the concatenation through QR cores
  (``lowrank.factored_svd``) and never forms the d×k update;
- ``linear``, ``ties``, ``dare_*``, ``magnitude_prune`` combine the A's and the B's separately (PEFT's
  definition, cross terms included);
- ``*_svd`` need the dense update: each adapter's ΔW is formed, pruned and folded into one accumulator in
  turn (TIES: twice, electing the sign first), so memory stays at a few copies of one module.
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
from registry.compute.lora import IncompatibleAdapters, LoraAdapter, LoraModule
from registry.compute.lowrank import difference_norm, factored_svd, truncate
from registry.compute.methods import MAJORITY_SIGN_METHODS, METHODS

_FACTORWISE = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
_SVD = ("svd", "ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")
_DENSITY = tuple(m for m in METHODS if m.startswith(("ties", "dare", "magnitude")))
_CONFIG_SCOPE = ("layers_to_transform", "layers_pattern", "exclude_modules")
_QUANTILE_LIMIT = 1 << 24  # torch.quantile refuses larger inputs
_GRAM_CHUNK = 4096  # columns of a dense update cast to fp64 at a time


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
    report = _report(method, weights, density, majority_sign_method, svd_rank, svd_clamp, seed, adapters)
    report.update(rank=rank, modules=len(modules), dtype="float32", device=str(device))
    if method in _SVD:
        values = list(errors.values())
        report["truncation_error"] = {
            "max": max(values),
            "mean": sum(values) / len(values),
            "per_module": errors,
        }
    report["seconds"] = round(time.perf_counter() - started, 4)
    return MergeResult(adapter=adapter, report=report)


def mask_generator(seed: int, module: str, slot: str, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator DARE draws one mask from: for adapter ``i`` of the inputs, ``slot`` is ``f"W{i}"`` for
    its dense update (the ``*_svd`` types) or ``f"A{i}"``/``f"B{i}"`` for its factors. Each mask depends
    only on (seed, module, slot), not on which other modules are merged or in which order."""
    digest = hashlib.sha256(f"{seed}\0{module}\0{slot}".encode()).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return generator


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
        refusals = {
            "use_dora": "it is a DoRA adapter (its magnitude vector cannot be merged as plain LoRA)",
            "lora_bias": "it trains a bias on lora_B, which a merged LoRA cannot carry",
            "modules_to_save": f"its modules_to_save {config.get('modules_to_save')} cannot be merged",
        }
        for option, why in refusals.items():
            if config.get(option):
                raise IncompatibleAdapters(f"adapter {i} cannot be merged: {why}")
        if config.get("bias", "none") not in ("none", None):
            raise IncompatibleAdapters(
                f"adapter {i} cannot be merged: it trains biases (bias={config['bias']!r}), "
                "which a merged LoRA cannot carry"
            )
        if not adapter.modules:
            raise IncompatibleAdapters(f"adapter {i} has no LoRA modules")
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


@dataclass
class _Keep:
    """Which entries of a task tensor survive pruning: all, ``|t| >= threshold``, or a boolean mask
    (DARE's, or a top-k when the threshold is tied), and DARE's rescaling by 1/density."""

    threshold: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    rescale: float | None = None

    def apply(self, t: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            t = t * self.mask
        elif self.threshold is not None:
            t = t * (t.abs() >= self.threshold)
        return t / self.rescale if self.rescale is not None else t


def _magnitude_keep(t: torch.Tensor, density: float) -> _Keep:
    """PEFT's ``magnitude_based_pruning``: keep the ``int(density·n)`` largest |entries| (``torch.topk``).
    A k-th-value threshold finds the same set ~4× faster; topk itself breaks ties at the threshold."""
    k = int(density * t.numel())
    if k == 0:
        return _Keep(mask=torch.zeros_like(t, dtype=torch.bool))
    magnitudes = t.abs().reshape(-1)
    threshold = torch.kthvalue(magnitudes, magnitudes.numel() - k + 1).values
    if int(torch.count_nonzero(magnitudes >= threshold)) == k:
        return _Keep(threshold=threshold)
    mask = torch.zeros(magnitudes.numel(), dtype=torch.bool, device=t.device)
    mask[torch.topk(magnitudes, k=k, largest=True).indices] = True
    return _Keep(mask=mask.reshape(t.shape))


def _combine(
    method: str,
    tensors: Sequence[Callable[[], torch.Tensor]],
    weights: Sequence[float],
    density: float | None,
    majority_sign_method: str,
    generators: Sequence[Callable[[], torch.Generator]],
) -> torch.Tensor:
    """PEFT's ``merge_utils`` (task_arithmetic, magnitude_prune, ties, dare_linear, dare_ties) on task
    tensors produced one at a time by ``tensors`` (recomputed, not stored, when TIES needs a second look).
    ``method`` is the combination type without ``_svd``."""
    # PEFT multiplies by torch.tensor(weights): fp32-rounded weights
    weights = [float(w) for w in torch.tensor(list(weights), dtype=torch.float32)]
    prune = None if method == "linear" or (density or 0) >= 1 else method.split("_")[0]

    def keep(j: int, t: torch.Tensor) -> _Keep:
        if prune == "dare":
            mask = torch.bernoulli(torch.full_like(t, density), generator=generators[j]())
            return _Keep(mask=mask.bool(), rescale=density)
        if prune in ("ties", "magnitude"):
            return _magnitude_keep(t, density)
        return _Keep()

    if not method.endswith("ties"):
        merged = None
        for j, make in enumerate(tensors):
            t = make()
            term = keep(j, t).apply(t) * weights[j]
            merged = term if merged is None else merged.add_(term)
        return merged

    # TIES: elect a sign per entry from the pruned (unweighted) tensors, then average the weighted
    # entries that agree with it.
    keeps: list[_Keep] = []
    votes = None
    for j, make in enumerate(tensors):
        t = make()
        keeps.append(keep(j, t))
        pruned = keeps[j].apply(t)
        vote = pruned if majority_sign_method == "total" else pruned.sign()
        votes = torch.zeros_like(vote) if votes is None else votes
        votes.add_(vote)
        del t, pruned, vote
    positive = votes >= 0
    del votes
    merged = count = None
    for j, make in enumerate(tensors):
        pruned = keeps[j].apply(make())
        agree = torch.where(positive, pruned > 0, pruned < 0)
        term = (pruned * weights[j]).mul_(agree)
        merged = torch.zeros_like(term) if merged is None else merged
        count = torch.zeros_like(term) if count is None else count
        merged.add_(term)
        count.add_(agree)
        del pruned, agree, term
    return merged.div_(count.clamp_(min=1.0))


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
            # the QR cores in fp64: (d + k)·(Σr)² work, so exact for free (fp32 QR is only ~1e-5 exact)
            B = torch.cat([b.double() * (self.weights[i] * m.scale) for i, b, _, m in loaded], dim=1)
            A = torch.cat([a.double() for _, _, a, _ in loaded], dim=0)
            svd = factored_svd(B, A)
            B_r, A_r, error = truncate(svd, rank)
            B_r, A_r = _canonical_signs(B_r.to(COMPUTE_DTYPE), A_r.to(COMPUTE_DTYPE))
            if self.clamp is not None:
                B_r, A_r = _clamp(B_r, A_r, self.clamp)
                total = float(torch.linalg.vector_norm(svd.S))
                error = float(difference_norm(B, A, B_r.double(), A_r.double())) / total if total > 0 else 0.0
            return (*_pad(B_r, A_r, rank), error)
        return self._dense_svd(name, loaded, rank)

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
            [lambda a=a: a for _, _, a, _ in loaded],
            weights_A,
            self.density,
            self.majority,
            [self._generator(name, f"A{i}") for i, *_ in loaded],
        )
        B = _combine(
            base,
            [lambda b=b: b for _, b, _, _ in loaded],
            weights_B,
            self.density,
            self.majority,
            [self._generator(name, f"B{i}") for i, *_ in loaded],
        )
        return B, A

    def _dense_svd(self, name: str, loaded: list, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The element-wise merge of the dense updates (in the base's orientation, as PEFT's
        ``get_delta_weight``), then the best rank-``rank`` factors of the result."""

        def delta(b: torch.Tensor, a: torch.Tensor, module: LoraModule) -> torch.Tensor:
            product = b @ a
            return (product.T if module.transposed_in_base else product) * module.scale

        merged = _combine(
            self.method.removesuffix("_svd"),
            [lambda b=b, a=a, m=m: delta(b, a, m) for _, b, a, m in loaded],
            [self.weights[i] for i, *_ in loaded],
            self.density,
            self.majority,
            [self._generator(name, f"W{i}") for i, *_ in loaded],
        )
        if loaded[0][3].transposed_in_base:
            merged = merged.T  # back to (out, in)
        B_r, A_r, error = _leading_svd(merged, rank)
        B_r, A_r = _canonical_signs(B_r, A_r)
        if self.clamp is not None:
            B_r, A_r = _clamp(B_r, A_r, self.clamp)
            # norms accumulated in fp64: an fp32 sum of squares over millions of entries is ~1e-4 off
            total = float(torch.linalg.vector_norm(merged, dtype=torch.float64))
            residual = float(
                torch.linalg.vector_norm(torch.addmm(merged, B_r, A_r, alpha=-1), dtype=torch.float64)
            )
            error = residual / total if total > 0 else 0.0
        return (*_pad(B_r, A_r, rank), error)


def _leading_svd(M: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The best rank-``rank`` factors ``(U·S, Vᵀ)`` of a dense ``M`` and their relative error, from the
    eigenvectors of the smaller Gram matrix formed in fp64 (in column chunks, so only one fp64 chunk is
    alive): the leading triplets come out accurate to fp32, as LAPACK's SVD gives them, 2-4× faster on a
    CPU and without cuSOLVER's slow SVD. ``S`` is taken as the norms of ``Uᵀ·M``'s rows, so the factors'
    product is exactly the projection of ``M`` on the leading singular vectors."""
    wide = M.shape[0] <= M.shape[1]
    X = M if wide else M.T  # X (small × large); its left singular vectors first
    small, large = X.shape
    gram = torch.zeros(small, small, dtype=torch.float64, device=M.device)
    for start in range(0, large, _GRAM_CHUNK):
        chunk = X[:, start : start + _GRAM_CHUNK].double()
        gram.addmm_(chunk, chunk.T)
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)  # ascending
    del gram
    eigenvalues = eigenvalues.flip(0).clamp_(min=0)
    keep = min(rank, small)
    U = eigenvectors[:, -keep:].flip(1) if keep else eigenvectors[:, :0]
    total = float(eigenvalues.sum())
    error = math.sqrt(float(eigenvalues[keep:].sum()) / total) if total > 0 else 0.0
    projected = torch.empty(keep, large, dtype=torch.float64, device=M.device)
    for start in range(0, large, _GRAM_CHUNK):
        projected[:, start : start + _GRAM_CHUNK] = U.T @ X[:, start : start + _GRAM_CHUNK].double()
    sigma = torch.linalg.vector_norm(projected, dim=1)
    unit = projected / torch.where(sigma > 0, sigma, 1)[:, None]  # X's right singular vectors (rows)
    if wide:  # M = X = U·S·unit
        return (U * sigma).float(), unit.float(), error
    return (unit.T * sigma).float(), U.T.float().contiguous(), error  # M = Xᵀ = unitᵀ·S·Uᵀ


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
