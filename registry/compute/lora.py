"""LoRA adapters as tensors: read a PEFT directory, write one back.

A module's update is ``ΔW = scale · B @ A`` with ``A`` (r, in) and ``B`` (out, r), in the (out, in)
orientation of ``nn.Linear`` whatever the base stores: under ``fan_in_fan_out`` (GPT-2's Conv1D) the
base weight is (in, out) and receives ``ΔWᵀ``; an embedding (``lora_embedding_A`` (r, num_embeddings),
``lora_embedding_B`` (dim, r)) receives ``ΔWᵀ`` too. ``LoraModule.base_orientation_delta`` applies that.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from registry.adapters import CONFIG_FILE, WEIGHTS_FILE
from registry.adapters.config import parse_adapter_config

PREFIX = "base_model.model."
_SUFFIXES = {
    ".lora_A.weight": ("linear", "A"),
    ".lora_B.weight": ("linear", "B"),
    ".lora_embedding_A": ("embedding", "A"),
    ".lora_embedding_B": ("embedding", "B"),
}


class IncompatibleAdapters(ValueError):
    """Adapters that cannot be combined (different bases, shapes or kinds), or an unsupported one."""


@dataclass
class LoraModule:
    """One adapted module: ``ΔW = scale · B @ A`` in (out, in) orientation."""

    A: torch.Tensor
    B: torch.Tensor
    scale: float
    kind: str = "linear"  # "linear" | "embedding"
    transposed_in_base: bool = False  # the base stores this weight as (in, out)

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """(out, in) of ΔW."""
        return self.B.shape[0], self.A.shape[1]

    def delta(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense ΔW (out, in); only for methods that need it, one module at a time."""
        return (self.B.to(dtype) @ self.A.to(dtype)) * self.scale

    def base_orientation_delta(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """ΔW as the base model stores the weight it updates."""
        delta = self.delta(dtype)
        return delta.T if self.transposed_in_base else delta


@dataclass
class LoraAdapter:
    """A PEFT LoRA adapter: its modules by name (``model.layers.0.self_attn.q_proj``) and its config."""

    modules: dict[str, LoraModule]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def base_model(self) -> tuple[str | None, str | None]:
        return self.config.get("base_model_name_or_path"), self.config.get("revision")


def load_adapter(
    directory: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> LoraAdapter:
    """Read a PEFT adapter directory; factors are cast to ``dtype`` (fp32 by default) on ``device``."""
    raw = json.loads((directory / CONFIG_FILE).read_text())
    config = parse_adapter_config(json.dumps(raw).encode())
    if raw.get("use_dora"):
        raise IncompatibleAdapters(f"{directory} is a DoRA adapter; DoRA cannot be computed on as plain LoRA")
    tensors = load_file(directory / WEIGHTS_FILE, device=str(device))
    parts: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        for suffix, (kind, role) in _SUFFIXES.items():
            if key.endswith(suffix):
                name = key.removeprefix(PREFIX).removesuffix(suffix)
                parts.setdefault(name, {"kind": kind})[role] = tensor.to(dtype)
                break
    modules = {}
    for name, found in sorted(parts.items()):
        if "A" not in found or "B" not in found:
            raise IncompatibleAdapters(f"{directory}: module {name} lacks its lora_A or lora_B")
        rank = found["A"].shape[0]
        alpha = config.alpha_for(name)
        scale = alpha / math.sqrt(rank) if config.use_rslora else alpha / rank
        modules[name] = LoraModule(
            A=found["A"],
            B=found["B"],
            scale=scale,
            kind=found["kind"],
            transposed_in_base=found["kind"] == "embedding" or config.fan_in_fan_out,
        )
    return LoraAdapter(modules=modules, config=raw)


def save_adapter(directory: Path, adapter: LoraAdapter, *, dtype: torch.dtype | None = None) -> None:
    """Write ``adapter`` as a PEFT directory. The config written must describe the factors: callers fold
    each module's scale into ``B`` or set ``r``/``lora_alpha``/``rank_pattern``/``alpha_pattern`` so that
    PEFT recomputes exactly ``module.scale``."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, module in adapter.modules.items():
        a_key, b_key = (
            ("lora_embedding_A", "lora_embedding_B")
            if module.kind == "embedding"
            else ("lora_A.weight", "lora_B.weight")
        )
        cast = dtype or module.A.dtype
        tensors[f"{PREFIX}{name}.{a_key}"] = module.A.detach().to("cpu", cast).contiguous()
        tensors[f"{PREFIX}{name}.{b_key}"] = module.B.detach().to("cpu", cast).contiguous()
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps(adapter.config, indent=2, sort_keys=True))
