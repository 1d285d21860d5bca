"""LoRA adapters as tensors: read a PEFT directory, write one back.

A module's update is ``ΔW = scale · B @ A`` with ``A`` (r, in) and ``B`` (out, r), in the (out, in)
orientation of ``nn.Linear`` whatever the base stores: under ``fan_in_fan_out`` (GPT-2's Conv1D) the
base weight is (in, out) and receives ``ΔWᵀ``; an embedding (``lora_embedding_A`` (r, num_embeddings),
``lora_embedding_B`` (dim, r)) receives ``ΔWᵀ`` too. ``LoraModule.base_orientation_delta`` applies that.

Besides the factors, a module may carry a DoRA magnitude vector (one value per output feature) and a
``lora_B.bias`` (``lora_bias``); an adapter may carry full ``modules_to_save`` tensors (``saved``) and, for
the PEFT types ``merge-base`` can merge besides LoRA (IA3, LoHa), their modules (``other``, empty
``modules``). Every other PEFT type is refused at load with what can be done with it instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from registry.adapters import CONFIG_FILE, WEIGHTS_FILE
from registry.adapters.compatibility import BASE_COPY_SUFFIX, MAGNITUDE_SUFFIX, in_modules_to_save
from registry.adapters.config import MERGE_BASE_TYPES, LoraConfig, parse_adapter_config

PREFIX = "base_model.model."
_SUFFIXES = {
    ".lora_A.weight": ("linear", "A"),
    ".lora_B.weight": ("linear", "B"),
    ".lora_B.bias": ("linear", "bias"),
    ".lora_embedding_A": ("embedding", "A"),
    ".lora_embedding_B": ("embedding", "B"),
    MAGNITUDE_SUFFIX: (None, "magnitude"),
}
_OTHER_TENSORS = {"IA3": (".ia3_l",), "LOHA": (".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b")}


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
    magnitude: torch.Tensor | None = None  # DoRA: (out,), W' = m · (W + ΔW) / ‖W + ΔW‖ per output
    bias: torch.Tensor | None = None  # lora_B.bias (out,): the base bias receives scale · bias

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
class OtherModule:
    """A module of an IA3 or LoHa adapter, in (out, in) orientation like ``LoraModule``.

    IA3: ``tensors["ia3_l"]`` is (out, 1) (scales the rows of W and the bias) or (1, in) (a feedforward
    module: scales the columns). LoHa: ΔW = (w1_a·w1_b) ⊙ (w2_a·w2_b) · scale."""

    kind: str  # "ia3" | "loha"
    tensors: dict[str, torch.Tensor]
    scale: float = 1.0
    transposed_in_base: bool = False

    @property
    def shape(self) -> tuple[int, int] | None:
        """(out, in) of the update; None for IA3, whose vector gives only one of them."""
        if self.kind != "loha":
            return None
        return self.tensors["hada_w1_a"].shape[0], self.tensors["hada_w1_b"].shape[1]

    @property
    def feedforward(self) -> bool:
        return self.kind == "ia3" and self.tensors["ia3_l"].shape[0] == 1

    def delta(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """LoHa's dense ΔW (out, in)."""
        t = {k: v.to(dtype) for k, v in self.tensors.items()}
        return (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"]) * self.scale


@dataclass
class LoraAdapter:
    """A PEFT adapter: its LoRA modules by name (``model.layers.0.self_attn.q_proj``) and its config.

    ``saved``: the ``modules_to_save`` tensors by name without the PEFT prefix (``lm_head.weight``);
    ``other``: the modules of an IA3/LoHa adapter (``peft_type``), whose ``modules`` is empty."""

    modules: dict[str, LoraModule]
    config: dict[str, Any] = field(default_factory=dict)
    peft_type: str = "LORA"
    saved: dict[str, torch.Tensor] = field(default_factory=dict)
    other: dict[str, OtherModule] = field(default_factory=dict)

    @property
    def dora(self) -> bool:
        return any(module.magnitude is not None for module in self.modules.values())

    @property
    def base_model(self) -> tuple[str | None, str | None]:
        return self.config.get("base_model_name_or_path"), self.config.get("revision")


def load_adapter(
    directory: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> LoraAdapter:
    """Read a PEFT adapter directory; tensors are cast to ``dtype`` (fp32 by default) on ``device``.

    Integer and fp8 stored tensors are cast like PEFT's ``load_state_dict`` does. Raises
    ``IncompatibleAdapters`` for a PEFT type nothing here computes with (LoKr, VeRA, AdaLoRA)."""
    raw = json.loads((directory / CONFIG_FILE).read_text())
    config = parse_adapter_config(json.dumps(raw).encode())
    if config.peft_type != "LORA" and config.peft_type not in MERGE_BASE_TYPES:
        raise IncompatibleAdapters(
            f"{directory} is a {config.peft_type} adapter; the registry stores, serves and checks it, but "
            f"computes only with LoRA adapters (and merges {', '.join(MERGE_BASE_TYPES)} into their base "
            "with merge-base); merge or convert it with PEFT instead"
        )
    tensors = load_file(directory / WEIGHTS_FILE, device=str(device))
    saved = {}
    for key in list(tensors):
        rest = key.removeprefix(PREFIX)
        if rest != key and in_modules_to_save(rest, config) and not rest.endswith(BASE_COPY_SUFFIX):
            saved[rest] = tensors.pop(key).to(dtype)
    if config.peft_type != "LORA":
        other = _other_modules(config, tensors, dtype, directory)
        return LoraAdapter(modules={}, config=raw, peft_type=config.peft_type, saved=saved, other=other)
    parts: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        for suffix, (kind, role) in _SUFFIXES.items():
            if key.endswith(suffix):
                name = key.removeprefix(PREFIX).removesuffix(suffix)
                found = parts.setdefault(name, {})
                if kind is not None:
                    found["kind"] = kind
                found[role] = tensor.to(dtype)
                break
    modules = {}
    for name, found in sorted(parts.items()):
        if "A" not in found or "B" not in found:
            raise IncompatibleAdapters(f"{directory}: module {name} lacks its lora_A or lora_B")
        modules[name] = LoraModule(
            A=found["A"],
            B=found["B"],
            scale=_scale(config, name, found["A"].shape[0]),
            kind=found["kind"],
            transposed_in_base=found["kind"] == "embedding" or config.fan_in_fan_out,
            magnitude=found.get("magnitude"),
            bias=found.get("bias"),
        )
    return LoraAdapter(modules=modules, config=raw, saved=saved)


def _scale(config: LoraConfig, name: str, rank: int) -> float:
    alpha = config.alpha_for(name)
    return alpha / math.sqrt(rank) if config.use_rslora else alpha / rank


def _other_modules(
    config: LoraConfig, tensors: dict[str, torch.Tensor], dtype: torch.dtype, directory: Path
) -> dict[str, OtherModule]:
    suffixes = _OTHER_TENSORS[config.peft_type]
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        suffix = next((s for s in suffixes if key.endswith(s)), None)
        if suffix is None:
            raise IncompatibleAdapters(
                f"{directory}: tensor {key} is not one {config.peft_type} merge-base can merge "
                f"({', '.join(suffixes)}); only Linear/Conv1D layers without CP decomposition are merged"
            )
        name = key.removeprefix(PREFIX).removesuffix(suffix)
        parts.setdefault(name, {})[suffix[1:]] = tensor.to(dtype)
    kind = config.peft_type.lower()
    modules = {}
    for name, found in sorted(parts.items()):
        missing = [s[1:] for s in suffixes if s[1:] not in found]
        if missing:
            raise IncompatibleAdapters(f"{directory}: module {name} lacks {', '.join(missing)}")
        scale = config.scaling_for(name) if kind == "loha" else 1.0
        modules[name] = OtherModule(kind, found, scale, config.fan_in_fan_out)
    return modules


def save_adapter(directory: Path, adapter: LoraAdapter, *, dtype: torch.dtype | None = None) -> None:
    """Write ``adapter`` as a PEFT directory. The config written must describe the factors: callers fold
    each module's scale into ``B`` or set ``r``/``lora_alpha``/``rank_pattern``/``alpha_pattern`` so that
    PEFT recomputes exactly ``module.scale``. DoRA magnitudes, ``lora_B`` biases and ``saved`` tensors are
    written with them (the config must then say ``use_dora``/``lora_bias``/``modules_to_save``)."""
    if adapter.peft_type != "LORA":
        raise IncompatibleAdapters(f"only LoRA adapters are written here, not {adapter.peft_type}")
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
        for suffix, extra in ((MAGNITUDE_SUFFIX, module.magnitude), (".lora_B.bias", module.bias)):
            if extra is not None:
                tensors[f"{PREFIX}{name}{suffix}"] = extra.detach().to("cpu", cast).contiguous()
    for name, tensor in adapter.saved.items():
        tensors[f"{PREFIX}{name}"] = tensor.detach().to("cpu", dtype or tensor.dtype).contiguous()
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps(adapter.config, indent=2, sort_keys=True))


def carry_saved(adapters: Sequence[LoraAdapter], merged: LoraAdapter) -> None:
    """Give a merge's output the ``modules_to_save`` tensors its inputs share (``merge._check_adapters``
    has refused inputs whose saved tensors differ)."""
    if adapters and adapters[0].saved:
        merged.saved = dict(adapters[0].saved)
