"""Check LoHa, LoKr, IA3, VeRA and AdaLoRA adapters against their base by PEFT's tensor names and shapes.

For a module ``M`` whose base weight is (out, in) (``nn.Linear``; (in, out) for GPT-2's Conv1D, accepted
either way), PEFT 0.21 saves:

- IA3: ``M.ia3_l`` (out, 1), or (1, in) for a ``feedforward_modules`` entry;
- LoHa: ``M.hada_w1_a``/``M.hada_w2_a`` (out, r), ``M.hada_w1_b``/``M.hada_w2_b`` (r, in); ΔW is
  ``(w1_a·w1_b) ⊙ (w2_a·w2_b) · alpha/r``;
- LoKr: ``M.lokr_w1`` (a, b) or ``lokr_w1_a`` (a, r)·``lokr_w1_b`` (r, b), the same for ``w2`` (c, d); ΔW is
  ``kron(w1, w2)``, so out = a·c and in = b·d;
- VeRA: ``M.vera_lambda_b`` (out,), ``M.vera_lambda_d`` (r,), and the shared ``base_model.vera_A`` (r, in_max)
  and ``base_model.vera_B`` (out_max, r) when ``save_projection`` is on;
- AdaLoRA: ``M.lora_A`` (r_M, in), ``M.lora_B`` (out, r_M), ``M.lora_E`` (r_M, 1).

Pure Python, like the rest of ``registry.adapters``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from registry.adapters.base_manifest import WeightShape
from registry.adapters.compatibility import (
    _OTHER_SUFFIXES,
    _VERA_SHARED,
    PREFIX,
    LoraModule,
    SavedModule,
    check_dtype,
    check_saved_modules,
    fmt,
    in_modules_to_save,
    resolve,
)
from registry.adapters.config import LoraConfig
from registry.adapters.safetensors_header import SafetensorsHeader, TensorInfo
from registry.adapters.weight_names import WeightIndex

_REQUIRED = {
    "IA3": ("ia3_l",),
    "LOHA": ("w1_a", "w1_b", "w2_a", "w2_b"),
    "VERA": ("lambda_b", "lambda_d"),
    "ADALORA": ("a", "b", "e"),
}


def check_other(
    config: LoraConfig, header: SafetensorsHeader, index: WeightIndex[WeightShape], problems: list[str]
) -> tuple[list[LoraModule], list[SavedModule]]:
    """The adapted modules and ``modules_to_save`` copies of a non-LoRA adapter; problems are appended."""
    peft_type = config.peft_type
    suffixes = _OTHER_SUFFIXES[peft_type]
    parts: dict[str, dict[str, TensorInfo]] = defaultdict(dict)
    saved: dict[str, dict[str, TensorInfo]] = defaultdict(dict)
    shared: dict[str, TensorInfo] = {}
    for key, info in header.tensors.items():
        check_dtype(info, problems)
        rest = key.removeprefix(PREFIX)
        # longest suffix first: ".lokr_w1_a" before ".lokr_w1"
        suffix = next(
            (s for s in sorted(suffixes, key=len, reverse=True) if rest != key and rest.endswith(s)), None
        )
        if suffix is not None and len(rest) > len(suffix):
            parts[rest.removesuffix(suffix)][suffixes[suffix]] = info
        elif peft_type == "VERA" and key in _VERA_SHARED:
            shared[key] = info
        elif rest != key and in_modules_to_save(rest, config):
            owner, _, param = rest.rpartition(".")
            saved[owner][param] = info
        else:
            names = ", ".join(f"<module>{s}" for s in suffixes)
            problems.append(
                f"unexpected tensor {key!r}: a {peft_type} adapter holds {PREFIX}{names}"
                + (f" and {', '.join(_VERA_SHARED)}" if peft_type == "VERA" else "")
                + " and weights of modules_to_save; remove it or re-save the adapter with PEFT."
            )
    modules = []
    for name in sorted(parts):
        module = _check_module(name, parts[name], config, index, problems)
        if module is not None:
            modules.append(module)
    if peft_type == "VERA":
        _check_vera_shared(shared, modules, config, problems)
    if not parts:
        problems.append(
            f"the adapter has no {peft_type} tensors ({', '.join(f'<module>{s}' for s in suffixes)}); "
            "save it with PEFT's save_pretrained."
        )
    return modules, check_saved_modules(saved, index, problems)


def _check_module(
    name: str,
    found: dict[str, TensorInfo],
    config: LoraConfig,
    index: WeightIndex[WeightShape],
    problems: list[str],
) -> LoraModule | None:
    peft_type = config.peft_type
    missing = [role for role in _REQUIRED.get(peft_type, ()) if role not in found]
    if peft_type == "LOKR":
        missing = [w for w in ("w1", "w2") if w not in found and not {f"{w}_a", f"{w}_b"} <= found.keys()]
    if missing:
        present = next(iter(found.values()))
        problems.append(
            f"orphan tensor {present.name!r}: module {name!r} lacks its {', '.join(missing)} "
            f"({peft_type}); re-save the adapter with PEFT."
        )
        return None
    for info in found.values():
        if len(info.shape) > 2:
            problems.append(
                f"tensor {info.name!r} has shape {fmt(info.shape)}; only {peft_type} on Linear/Conv1D layers "
                "(at most 2-D tensors) is checked and stored, not on convolutions."
            )
            return None
    base_key = resolve(name, index, problems)
    if base_key is None:
        return None
    base_shape = index.weights[base_key].shape
    oriented = [(base_shape[0], base_shape[1], False), (base_shape[1], base_shape[0], True)]
    if config.fan_in_fan_out:
        oriented.reverse()
    rank = 0
    for out_f, in_f, flipped in oriented:
        fits, rank = _fits(peft_type, found, out_f, in_f, config, name)
        if fits:
            return LoraModule(name, base_key, rank, in_f, out_f, peft_type.lower(), flipped)
    shapes = ", ".join(f"{info.name.rpartition('.')[2]} {fmt(info.shape)}" for info in found.values())
    problems.append(
        f"module {name!r}: {peft_type} tensors {shapes} do not fit base weight {base_key!r} "
        f"{fmt(base_shape)}{_expected(peft_type, base_shape, config, name)}; is the adapter for a different "
        "base model?"
    )
    return None


def _fits(
    peft_type: str, found: dict[str, TensorInfo], out_f: int, in_f: int, config: LoraConfig, name: str
) -> tuple[bool, int]:
    """Whether the tensors fit a (out_f, in_f) weight, and the module's rank."""
    shape = {role: info.shape for role, info in found.items()}
    if peft_type == "IA3":
        feedforward = _is_feedforward(config, name)
        return shape["ia3_l"] == ((1, in_f) if feedforward else (out_f, 1)), 0
    if peft_type == "LOHA":
        r = config.rank_for(name)
        want = {"w1_a": (out_f, r), "w1_b": (r, in_f), "w2_a": (out_f, r), "w2_b": (r, in_f)}
        return all(shape.get(role) == dims for role, dims in want.items()), r
    if peft_type == "LOKR":
        factors = []
        for w in ("w1", "w2"):
            if w in shape:
                dims = shape[w]
            else:
                left, right = shape[f"{w}_a"], shape[f"{w}_b"]
                if len(left) != 2 or len(right) != 2 or left[1] != right[0]:
                    return False, 0
                dims = (left[0], right[1])
            if len(dims) != 2:
                return False, 0
            factors.append(dims)
        (a, b), (c, d) = factors
        ranks = [shape[k][1] for k in ("w1_a", "w2_a") if k in shape]
        return (a * c, b * d) == (out_f, in_f), max(ranks, default=config.r)
    if peft_type == "VERA":
        r = config.r
        return shape["lambda_b"] == (out_f,) and shape["lambda_d"] == (r,), r
    # ADALORA: the rank of each module is what pruning left (rank_pattern holds masks, not ranks)
    lora_a, lora_b, lora_e = shape["a"], shape["b"], shape["e"]
    if len(lora_a) != 2 or len(lora_b) != 2:
        return False, 0
    r = lora_a[0]
    return lora_a == (r, in_f) and lora_b == (out_f, r) and lora_e == (r, 1), r


def _expected(peft_type: str, base_shape: tuple[int, ...], config: LoraConfig, name: str) -> str:
    out_f, in_f = base_shape
    if peft_type == "IA3":
        return f": ia3_l must be ({out_f}, 1), or (1, {in_f}) for a feedforward module"
    if peft_type == "LOHA":
        r = config.rank_for(name)
        return f": hada_w*_a must be ({out_f}, {r}) and hada_w*_b ({r}, {in_f})"
    if peft_type == "LOKR":
        return f": kron(lokr_w1, lokr_w2) must be {fmt(base_shape)}"
    if peft_type == "VERA":
        return f": vera_lambda_b must be ({out_f},) and vera_lambda_d ({config.r},)"
    return f": lora_A must be (r, {in_f}), lora_B ({out_f}, r) and lora_E (r, 1)"


def _is_feedforward(config: LoraConfig, name: str) -> bool:
    """PEFT's IA3 ``is_feedforward``: a regex ``feedforward_modules`` full-matches, a list entry ends it."""
    value = config.raw.get("feedforward_modules")
    if isinstance(value, str):
        return re.fullmatch(value, name) is not None
    if isinstance(value, list):
        return any(isinstance(k, str) and (name == k or name.endswith(f".{k}")) for k in value)
    return False


def _check_vera_shared(
    shared: dict[str, TensorInfo], modules: list[LoraModule], config: LoraConfig, problems: list[str]
) -> None:
    """The shared random projections: vera_A (r, ≥ every in), vera_B (≥ every out, r)."""
    if not shared:
        return
    r = config.r
    need_in = max((m.in_features for m in modules), default=0)
    need_out = max((m.out_features for m in modules), default=0)
    a, b = shared.get("base_model.vera_A"), shared.get("base_model.vera_B")
    if a is None or b is None:
        problems.append("a VeRA adapter saves both base_model.vera_A and base_model.vera_B, or neither.")
        return
    if len(a.shape) != 2 or a.shape[0] != r or a.shape[1] < need_in:
        problems.append(f"base_model.vera_A is {fmt(a.shape)}; it must be ({r}, n) with n >= {need_in}.")
    if len(b.shape) != 2 or b.shape[1] != r or b.shape[0] < need_out:
        problems.append(f"base_model.vera_B is {fmt(b.shape)}; it must be (n, {r}) with n >= {need_out}.")
    if math.prod(a.shape) == 0:
        problems.append("base_model.vera_A is empty.")
