"""Extract a LoRA adapter from a full fine-tune (like mergekit's ``extract_lora``).

For every 2-D weight that differs between the base and the fine-tune, ``ΔW = W_ft − W_base`` (fp32, in
(out, in) orientation) is factored by SVD and truncated to a rank: ``B = U_k·S_k``, ``A = Vh_k`` (PEFT's
split, scale 1). The rank is either fixed or, per module, the smallest that keeps a fraction of ``‖ΔW‖²``
(the "energy"). Tensors are read one at a time, so peak memory is two weights and the SVD's workspace.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from registry.adapters.config import pattern_key
from registry.compute.base_merge import TORCH_DTYPES, SafetensorsWeights, read_weights
from registry.compute.device import select_device
from registry.compute.lora import LoraAdapter, LoraModule

# Models whose blocks are transformers' Conv1D (weights stored (in, out)): PEFT sets fan_in_fan_out for them.
CONV1D_MODEL_TYPES = frozenset({"gpt2", "openai-gpt", "imagegpt", "decision_transformer"})
_EMBEDDING_NAMES = frozenset(
    {"wte", "wpe", "shared", "word_embeddings", "position_embeddings", "token_type_embeddings"}
)
# Randomized SVD (fixed seed) when the target rank is small next to the matrix; exact SVD otherwise.
_OVERSAMPLE = 8
_POWER_ITERATIONS = 4


def extract_lora(
    base_dir: Path,
    finetuned_dir: Path,
    *,
    rank: int | None = None,
    energy: float | None = None,
    base_model_name_or_path: str | None = None,
    device: torch.device | str = "cpu",
    fan_in_fan_out: bool | None = None,
) -> tuple[LoraAdapter, dict[str, Any]]:
    """A LoRA adapter approximating ``finetuned_dir − base_dir``, and a report of what each module kept.

    Give exactly one of ``rank`` (every module gets ``min(rank, out, in)``) or ``energy`` in (0, 1] (each
    module gets the smallest rank whose singular values keep that fraction of ``‖ΔW‖_F²``). Embeddings
    (``embed_*``, ``wte``…) become LoRA embeddings; ``fan_in_fan_out`` (Conv1D layers) defaults to the
    fine-tune's ``config.json`` model_type being GPT-2-like. 1-D tensors (norms, biases), unchanged weights
    and tensors whose shape changed cannot be carried by a LoRA: they are skipped and listed in the report.
    """
    if (rank is None) == (energy is None):
        raise ValueError("pass exactly one of rank (a fixed rank) or energy (a fraction of ‖ΔW‖² to keep)")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if energy is not None and not 0 < energy <= 1:
        raise ValueError(f"energy must be a fraction in (0, 1], got {energy!r}")
    dev = select_device(device) if isinstance(device, str) else device
    base, tuned = read_weights(base_dir), read_weights(finetuned_dir)
    model_config = _model_config(Path(finetuned_dir)) or _model_config(Path(base_dir))
    if fan_in_fan_out is None:
        fan_in_fan_out = model_config.get("model_type") in CONV1D_MODEL_TYPES
    modules: dict[str, LoraModule] = {}
    entries: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    unchanged = 0
    kept_energy = total_energy = 0.0
    for name in sorted(tuned.locations.keys() | base.locations.keys()):
        reason = _unextractable(name, base, tuned)
        if reason == "unchanged":
            unchanged += 1
            continue
        if reason is not None:
            skipped[name] = reason
            continue
        module_name = name.removesuffix(".weight")
        kind = "embedding" if _is_embedding(module_name) else "linear"
        transposed = kind == "embedding" or fan_in_fan_out
        delta = tuned.read(name).to(dev, torch.float32) - base.read(name).to(dev, torch.float32)
        if not torch.any(delta):  # only signed zeros differ
            unchanged += 1
            continue
        B, A, kept, total, residual = _factor(delta.T if transposed else delta, rank=rank, energy=energy)
        del delta
        modules[module_name] = LoraModule(
            A=A.contiguous(), B=B.contiguous(), scale=1.0, kind=kind, transposed_in_base=transposed
        )
        kept_energy, total_energy = kept_energy + kept, total_energy + total
        entries[module_name] = {
            "rank": A.shape[0],
            "shape": [B.shape[0], A.shape[1]],
            "kind": kind,
            "retained_energy": kept / total,
            "relative_error": math.sqrt(residual / total),
        }
    if not modules:
        raise ValueError(
            f"no 2-D weight differs between {base_dir} and {finetuned_dir}; there is nothing to extract"
            + (f" (not extractable: {', '.join(sorted(skipped)[:5])})" if skipped else "")
        )
    targets = _short_targets(modules, base)
    config = lora_config_for(
        modules,
        target_modules=targets,
        base_model_name_or_path=base_model_name_or_path,
        task_type="CAUSAL_LM" if _is_causal_lm(model_config) else None,
    )
    report = {
        "mode": "rank" if rank is not None else "energy",
        "rank": rank,
        "energy": energy,
        "r": config["r"],
        "rank_pattern": config["rank_pattern"],
        "modules": entries,
        "total_retained_energy": kept_energy / total_energy if total_energy else 1.0,
        "parameters": sum(m.A.numel() + m.B.numel() for m in modules.values()),
        "skipped": skipped,
        "unchanged": unchanged,
        "fan_in_fan_out": fan_in_fan_out,
        "device": str(dev),
    }
    return LoraAdapter(modules=modules, config=config), report


def lora_config_for(
    modules: dict[str, LoraModule],
    *,
    target_modules: list[str] | None = None,
    base_model_name_or_path: str | None = None,
    revision: str | None = None,
    task_type: str | None = None,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete PEFT LoRA config under which PEFT rebuilds ``modules`` with scale 1 each.

    Every module's ``scale`` must already be 1 (folded into ``B``): ``lora_alpha = r`` and, where a module's
    rank differs from the most common one, ``rank_pattern`` and ``alpha_pattern`` both give it its own rank.
    ``target_modules`` defaults to the full module names. From ``template`` only ``task_type``,
    ``auto_mapping`` and the base model are kept: options like ``layers_to_transform`` or ``modules_to_save``
    would no longer describe the new tensors.
    """
    if any(m.scale != 1.0 for m in modules.values()):
        raise ValueError("lora_config_for needs every module's scale folded into B (scale 1)")
    template = template or {}
    ranks = {name: m.rank for name, m in modules.items()}
    counts = Counter(ranks.values())
    r = max(counts, key=lambda k: (counts[k], k))
    rank_pattern = _patterns({n: k for n, k in ranks.items() if k != r}, ranks)
    config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": task_type if task_type is not None else template.get("task_type"),
        "base_model_name_or_path": base_model_name_or_path or template.get("base_model_name_or_path"),
        "revision": revision or template.get("revision"),
        "r": r,
        "lora_alpha": r,
        "rank_pattern": rank_pattern,
        "alpha_pattern": dict(rank_pattern),
        "target_modules": sorted(target_modules) if target_modules is not None else sorted(modules),
        "fan_in_fan_out": any(m.transposed_in_base for m in modules.values() if m.kind == "linear"),
        "use_rslora": False,
        "use_dora": False,
        "bias": "none",
        "lora_bias": False,
        "lora_dropout": 0.0,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    if "auto_mapping" in template:
        config["auto_mapping"] = template["auto_mapping"]
    return config


def _patterns(pattern: dict[str, int], ranks: dict[str, int]) -> dict[str, int]:
    """``rank_pattern`` keyed by plain module names if PEFT's first-match regex rule maps every module to
    its own entry (the usual case: readable, and right for tools that look names up literally), else by
    anchored escaped names, which match only themselves."""
    for key_of in (lambda n: n, lambda n: f"^{re.escape(n)}$"):
        keyed = {key_of(n): k for n, k in pattern.items()}
        if all(pattern_key(keyed, name) == (key_of(name) if name in pattern else None) for name in ranks):
            return keyed
    raise AssertionError("anchored rank_pattern keys always match only their own module")


def _factor(
    delta: torch.Tensor, *, rank: int | None, energy: float | None
) -> tuple[torch.Tensor, torch.Tensor, float, float, float]:
    """``(B, A, kept, total, residual)``: truncated SVD factors of ``delta`` (fp32, on CPU), ``‖BA‖²``,
    ``‖ΔW‖²`` and ``‖ΔW − BA‖²`` (from the dropped singular values, or measured after a randomized SVD)."""
    smallest = min(delta.shape)
    randomized = rank is not None and rank + _OVERSAMPLE <= smallest // 4
    if randomized:
        U, S, V = _randomized_svd(delta, rank + _OVERSAMPLE)
        Vh = V.T
    else:
        driver = "gesvd" if delta.is_cuda else None
        U, S, Vh = torch.linalg.svd(delta, full_matrices=False, driver=driver)
    squares = S.double() ** 2
    if rank is not None:
        k = min(rank, smallest)
    else:
        cumulative = torch.cumsum(squares, 0) / squares.sum()
        k = min(int(torch.searchsorted(cumulative, torch.tensor(energy, dtype=torch.float64))) + 1, smallest)
    B, A = U[:, :k] * S[:k], Vh[:k]
    kept = float(squares[:k].sum())
    if randomized:
        total = float(torch.linalg.vector_norm(delta)) ** 2
        residual = float(torch.linalg.vector_norm(torch.addmm(delta, B, A, alpha=-1.0))) ** 2
    else:
        total, residual = float(squares.sum()), float(squares[k:].sum())
    return B.cpu(), A.cpu(), min(kept, total), total, residual


def _randomized_svd(delta: torch.Tensor, q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    devices = [delta.device] if delta.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        return torch.svd_lowrank(delta, q=q, niter=_POWER_ITERATIONS)


def _unextractable(name: str, base: SafetensorsWeights, tuned: SafetensorsWeights) -> str | None:
    """Why the tensor ``name`` gets no LoRA module ("unchanged" included), or None if it gets one."""
    if name not in tuned.locations:
        return "only in the base model"
    if name not in base.locations:
        return "only in the fine-tune (a LoRA cannot add a tensor)"
    b, t = base.info(name), tuned.info(name)
    if b.shape != t.shape:
        return f"shape changed from {list(b.shape)} to {list(t.shape)} (resized vocabulary?)"
    if b.dtype not in TORCH_DTYPES or t.dtype not in TORCH_DTYPES:
        return "unchanged" if _same_bytes(name, base, tuned) else f"non-float dtype {t.dtype}"
    if b.dtype == t.dtype:
        unchanged = _same_bytes(name, base, tuned)
    else:
        unchanged = torch.equal(base.read(name).float(), tuned.read(name).float())
    if unchanged:
        return "unchanged"
    if len(t.shape) != 2:
        return f"{len(t.shape)}-D tensor changed (norms and biases cannot be carried by a LoRA)"
    if not name.endswith(".weight"):
        return "2-D tensor changed but is not a module weight"
    return None


def _same_bytes(name: str, base: SafetensorsWeights, tuned: SafetensorsWeights) -> bool:
    b, t = base.info(name), tuned.info(name)
    if b.dtype != t.dtype or b.end - b.begin != t.end - t.begin:
        return False
    with (
        (base.directory / base.locations[name]).open("rb") as fb,
        (tuned.directory / tuned.locations[name]).open("rb") as ft,
    ):
        fb.seek(base.headers[base.locations[name]].data_start + b.begin)
        ft.seek(tuned.headers[tuned.locations[name]].data_start + t.begin)
        remaining = b.end - b.begin
        while remaining:
            chunk = min(remaining, 1 << 24)
            if fb.read(chunk) != ft.read(chunk):
                return False
            remaining -= chunk
    return True


def _is_embedding(module: str) -> bool:
    last = module.rpartition(".")[2]
    return last in _EMBEDDING_NAMES or last.startswith("embed")


def _short_targets(modules: dict[str, LoraModule], base: SafetensorsWeights) -> list[str] | None:
    """The modules' last names (``q_proj``…) if they select exactly these modules among the base's weights,
    else None (full names): PEFT would otherwise add zero LoRA layers to the other modules of that name."""
    short = {name.rpartition(".")[2] for name in modules}
    selected = {
        key.removesuffix(".weight")
        for key in base.locations
        if key.endswith(".weight") and key.removesuffix(".weight").rpartition(".")[2] in short
    }
    return sorted(short) if selected == set(modules) else None


def _model_config(directory: Path) -> dict[str, Any]:
    try:
        value = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _is_causal_lm(model_config: dict[str, Any]) -> bool:
    architectures: Iterable[Any] = model_config.get("architectures") or ()
    return any(isinstance(a, str) and a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
