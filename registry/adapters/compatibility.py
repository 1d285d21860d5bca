"""Check an adapter's tensors against its config and its base model's shape manifest (design §4).

PEFT saves LoRA on a module ``M`` of the base model as ``base_model.model.M.lora_A.weight`` (r, in) and
``base_model.model.M.lora_B.weight`` (out, r) for Linear/Conv1D layers, and as ``…M.lora_embedding_A``
(r, num_embeddings) and ``…M.lora_embedding_B`` (embedding_dim, r) for Embedding layers. Besides those it
may save ``…M.lora_magnitude_vector`` (DoRA: one value per output feature), ``…M.lora_B.bias``
(``lora_bias``), ``…M.base_layer.weight`` (a copy of a LoRA'd embedding's base weight,
``save_embedding_layers``) and full weights of ``modules_to_save`` (whose rows may differ from the base's:
a resized vocabulary, reported in ``AdapterCheck.saved``). Anything else is refused.

``fan_in_fan_out`` is decided per module, as PEFT does by layer type (Conv1D: true, Linear: false, whatever
the config says): a module's factors must fit its base weight stored (out, in) or (in, out); a square
weight, which fits both, takes the orientation of the adapter's other modules of the same name, else the
config's. LoHa, LoKr, IA3, VeRA and AdaLoRA tensors are checked by their PEFT names and shapes
(``_OTHER_SUFFIXES``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from registry.adapters.base_manifest import BaseManifest, WeightShape
from registry.adapters.config import LoraConfig, pattern_key
from registry.adapters.safetensors_header import FLOAT_DTYPES, SafetensorsHeader, TensorInfo
from registry.adapters.weight_names import WeightIndex
from registry.errors import InvalidAdapter

PREFIX = "base_model.model."
BASE_COPY_SUFFIX = ".base_layer.weight"
MAGNITUDE_SUFFIX = ".lora_magnitude_vector"
#: Stored dtypes PEFT loads into its float parameters (``load_state_dict`` casts them): floats, fp8, integers.
#: Sub-byte floats (F4, F6_*), F8_E8M0, complex, bool and unsigned 16-64-bit tensors are refused.
ADAPTER_DTYPES = FLOAT_DTYPES | {"F8_E4M3", "F8_E5M2", "I8", "U8", "I16", "I32", "I64"}
#: peft_type -> tensor suffix -> role, for the PEFT types other than LoRA.
_OTHER_SUFFIXES: dict[str, dict[str, str]] = {
    "IA3": {".ia3_l": "ia3_l"},
    "LOHA": {
        ".hada_w1_a": "w1_a",
        ".hada_w1_b": "w1_b",
        ".hada_w2_a": "w2_a",
        ".hada_w2_b": "w2_b",
        ".hada_t1": "t1",
        ".hada_t2": "t2",
    },
    "LOKR": {
        ".lokr_w1": "w1",
        ".lokr_w1_a": "w1_a",
        ".lokr_w1_b": "w1_b",
        ".lokr_w2": "w2",
        ".lokr_w2_a": "w2_a",
        ".lokr_w2_b": "w2_b",
        ".lokr_t2": "t2",
    },
    "VERA": {".vera_lambda_b": "lambda_b", ".vera_lambda_d": "lambda_d"},
    "ADALORA": {".lora_A": "a", ".lora_B": "b", ".lora_E": "e"},
}
_VERA_SHARED = ("base_model.vera_A", "base_model.vera_B")
# key suffix -> (layer kind, role within the module)
LORA_SUFFIXES: dict[str, tuple[str, str]] = {
    ".lora_A.weight": ("linear", "a"),
    ".lora_B.weight": ("linear", "b"),
    ".lora_B.bias": ("linear", "bias"),
    ".lora_embedding_A": ("embedding", "a"),
    ".lora_embedding_B": ("embedding", "b"),
}
_MAX_LISTED = 20


@dataclass(frozen=True, slots=True)
class LoraModule:
    """One LoRA-adapted module of the base model, as found in the adapter."""

    name: str  # without "base_model.model." and the LoRA suffix: "model.layers.0.self_attn.q_proj"
    base_weight: str  # matched key in the base manifest
    rank: int
    in_features: int
    out_features: int
    kind: str  # "linear" | "embedding" | for other PEFT types their peft_type in lower case ("ia3", "loha")
    fan_in_fan_out: bool = False  # this module's base weight is stored (in, out) (GPT-2's Conv1D)
    dora: bool = False  # it has a DoRA magnitude vector


@dataclass(frozen=True, slots=True)
class SavedModule:
    """A module of ``modules_to_save``: a full copy of a base module that replaces it."""

    name: str  # "lm_head"
    base_weight: str
    shape: tuple[int, ...]  # of the saved weight
    base_shape: tuple[int, ...]
    has_bias: bool

    @property
    def resized(self) -> bool:
        """Its rows differ from the base's: a resized vocabulary (embed_tokens, lm_head) or label set."""
        return self.shape != self.base_shape


@dataclass(frozen=True, slots=True)
class AdapterCheck:
    """What ``check`` found: the adapted modules and the ``modules_to_save`` copies."""

    peft_type: str
    modules: list[LoraModule]
    saved: list[SavedModule]

    def summary(self) -> dict[str, object]:
        """JSON-ready facts for a version's record: kind, DoRA, saved modules, resized ones."""
        return {
            "peft_type": self.peft_type,
            "use_dora": any(m.dora for m in self.modules),
            "fan_in_fan_out_modules": sorted(m.name for m in self.modules if m.fan_in_fan_out),
            "modules_to_save": [
                {
                    "module": m.name,
                    "shape": list(m.shape),
                    "base_shape": list(m.base_shape),
                    "resized": m.resized,
                }
                for m in self.saved
            ],
            "resized": sorted(m.name for m in self.saved if m.resized),
        }


@dataclass(slots=True)
class _Parts:
    """The tensors found for one adapted module."""

    kind: str
    a: TensorInfo | None = None
    b: TensorInfo | None = None
    bias: TensorInfo | None = None
    magnitude: TensorInfo | None = None


@dataclass(slots=True)
class _Sorted:
    """The adapter's tensors sorted by what they are."""

    lora: dict[str, _Parts]
    base_copies: dict[str, TensorInfo]  # module -> its ``base_layer.weight``
    saved: dict[str, dict[str, TensorInfo]]  # modules_to_save module -> {"weight"|"bias": tensor}
    magnitudes: dict[str, TensorInfo]  # module -> its DoRA ``lora_magnitude_vector``


def check_adapter(config: LoraConfig, header: SafetensorsHeader, base: BaseManifest) -> list[LoraModule]:
    """The adapter's adapted modules, sorted by name; raises ``InvalidAdapter`` listing every problem."""
    return check(config, header, base).modules


def check(config: LoraConfig, header: SafetensorsHeader, base: BaseManifest) -> AdapterCheck:
    """``check_adapter`` with the ``modules_to_save`` copies (resized ones marked) and the adapter's kind."""
    problems: list[str] = []
    index = WeightIndex(base.weights)
    if config.peft_type != "LORA":
        from registry.adapters.other_types import check_other  # (it imports this module)

        modules, saved = check_other(config, header, index, problems)
    else:
        found = _sort_tensors(config, header, problems)
        _attach_magnitudes(found, config, problems)
        orientation = _orientations(found.lora, config, index)
        modules = []
        for name in sorted(found.lora):
            module = _check_lora_module(
                name, found.lora[name], config, index, orientation.get(name, config.fan_in_fan_out), problems
            )
            if module is not None:
                modules.append(module)
        _check_base_copies(found, index, problems)
        saved = check_saved_modules(found.saved, index, problems)
        if not found.lora:
            problems.append(
                "the adapter has no LoRA tensors (<module>.lora_A.weight / .lora_B.weight or "
                ".lora_embedding_A / .lora_embedding_B); save it with PEFT's save_pretrained."
            )
    if problems:
        raise InvalidAdapter(_summary(problems))
    return AdapterCheck(config.peft_type, modules, saved)


def _sort_tensors(config: LoraConfig, header: SafetensorsHeader, problems: list[str]) -> _Sorted:
    found = _Sorted(lora={}, base_copies={}, saved=defaultdict(dict), magnitudes={})
    for key, info in header.tensors.items():
        check_dtype(info, problems)
        rest = key.removeprefix(PREFIX)
        lora_part = _lora_part(rest) if rest != key else None
        if rest != key and rest.endswith(MAGNITUDE_SUFFIX) and len(rest) > len(MAGNITUDE_SUFFIX):
            found.magnitudes[rest.removesuffix(MAGNITUDE_SUFFIX)] = info
        elif lora_part is not None:
            module, kind, role = lora_part
            parts = found.lora.setdefault(module, _Parts(kind))
            if parts.kind != kind:
                problems.append(
                    f"module {module!r} mixes Linear tensors (lora_A/lora_B) with Embedding tensors "
                    f"(lora_embedding_A/B), see {key!r}; a module is one or the other."
                )
            else:
                setattr(parts, role, info)
        elif rest != key and rest.endswith(BASE_COPY_SUFFIX):
            found.base_copies[rest.removesuffix(BASE_COPY_SUFFIX)] = info
        elif rest != key and in_modules_to_save(rest, config):
            module, _, param = rest.rpartition(".")
            found.saved[module][param] = info
        else:
            problems.append(unexpected(key, config))
    return found


def check_dtype(info: TensorInfo, problems: list[str]) -> None:
    if info.dtype not in ADAPTER_DTYPES:
        problems.append(
            f"tensor {info.name!r} has dtype {info.dtype}, which PEFT cannot load into its parameters; "
            "adapter "
            f"tensors must be one of {', '.join(sorted(ADAPTER_DTYPES))}: save the adapter in a float dtype."
        )


def _lora_part(rest: str) -> tuple[str, str, str] | None:
    for suffix, (kind, role) in LORA_SUFFIXES.items():
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return rest.removesuffix(suffix), kind, role
    return None


def in_modules_to_save(rest: str, config: LoraConfig) -> bool:
    """PEFT wraps every module whose name ends with a ``modules_to_save`` entry (plain ``str.endswith``)."""
    if not config.modules_to_save:
        return False
    module, _, param = rest.rpartition(".")
    return bool(module) and param in ("weight", "bias") and module.endswith(tuple(config.modules_to_save))


def unexpected(key: str, config: LoraConfig) -> str:
    if not key.startswith(PREFIX):
        why = f"PEFT adapter keys start with {PREFIX!r}"
    elif key.endswith(".bias"):
        why = f"biases are only allowed as lora_B.bias with lora_bias=true (bias={config.raw.get('bias')!r})"
    else:
        listed = ", ".join(config.modules_to_save) if config.modules_to_save else "none"
        why = (
            "it is neither a LoRA tensor (<module>.lora_A.weight, .lora_B.weight, .lora_embedding_A/B) nor a "
            f"weight of a module in modules_to_save ({listed})"
        )
    return f"unexpected tensor {key!r}: {why}; remove it or re-save the adapter with PEFT."


def _orientations(
    lora: dict[str, _Parts], config: LoraConfig, index: WeightIndex[WeightShape]
) -> dict[str, bool]:
    """module -> fan_in_fan_out, as PEFT decides it per layer (see the module docstring)."""
    fits: dict[str, set[bool]] = {}
    for name, parts in lora.items():
        a, b = parts.a, parts.b
        base_key, _ = index.resolve(name)
        if parts.kind != "linear" or a is None or b is None or base_key is None:
            continue
        if len(a.shape) != 2 or len(b.shape) != 2:
            continue
        base_shape = index.weights[base_key].shape
        fits[name] = {
            flag
            for flag in (config.fan_in_fan_out, not config.fan_in_fan_out)
            if (a.shape[1], b.shape[0]) == _features("linear", base_shape, flag)
        }
    decided = {name: next(iter(f)) for name, f in fits.items() if len(f) == 1}
    by_last: dict[str, set[bool]] = defaultdict(set)
    for name, flag in decided.items():
        by_last[name.rpartition(".")[2]].add(flag)
    everyone = set(decided.values())
    result = dict(decided)
    for name, f in fits.items():
        if len(f) == 2:  # a square weight: its namesakes' orientation, else all others', else the config's
            siblings = by_last.get(name.rpartition(".")[2], set())
            if len(siblings) == 1:
                result[name] = next(iter(siblings))
            else:
                result[name] = next(iter(everyone)) if len(everyone) == 1 else config.fan_in_fan_out
    return result


def _check_lora_module(
    name: str,
    parts: _Parts,
    config: LoraConfig,
    index: WeightIndex[WeightShape],
    fan_in_fan_out: bool,
    problems: list[str],
) -> LoraModule | None:
    a, b = parts.a, parts.b
    if a is None or b is None:
        present = next(info for info in (a, b, parts.bias) if info is not None)
        a_name, b_name = _key(name, parts.kind, "a"), _key(name, parts.kind, "b")
        missing = " and ".join(repr(k) for k, info in ((a_name, a), (b_name, b)) if info is None)
        problems.append(
            f"orphan tensor {present.name!r}: {missing} missing; each LoRA module needs both A and B."
        )
        return None
    for info in (a, b):
        if len(info.shape) != 2:
            problems.append(
                f"tensor {info.name!r} has shape {fmt(info.shape)} ({len(info.shape)}-D); only LoRA on "
                "Linear, Conv1D and Embedding layers (2-D A and B) is supported, not on Conv2d/Conv3d."
            )
            return None
    rank = a.shape[0]
    if b.shape[1] != rank:
        problems.append(
            f"module {name!r}: A {a.name!r} {fmt(a.shape)} has rank {rank} but B {b.name!r} {fmt(b.shape)} "
            f"has rank {b.shape[1]}; A is (r, in) and B is (out, r) with the same r."
        )
        return None
    base_key = resolve(name, index, problems)
    if base_key is None:
        return None
    base_shape = index.weights[base_key].shape
    in_features, out_features = _features(parts.kind, base_shape, fan_in_fan_out)
    if a.shape[1] != in_features or b.shape[0] != out_features:
        problems.append(_shape_mismatch(name, parts.kind, a, b, base_key, base_shape, fan_in_fan_out))
    expected = config.rank_for(name)
    if rank != expected:
        key = pattern_key(config.rank_pattern, name)
        source = f"rank_pattern[{key!r}]" if key is not None else "r; no rank_pattern key matches it"
        problems.append(
            f"module {name!r} has rank {rank} (A {fmt(a.shape)}, B {fmt(b.shape)}) but adapter_config.json "
            f"gives it rank {expected} ({source}); fix r/rank_pattern or re-save the adapter."
        )
    _check_bias(name, parts, config, out_features, problems)
    _check_magnitude(name, parts, config, out_features, problems)
    flipped = parts.kind == "linear" and fan_in_fan_out
    return LoraModule(
        name, base_key, rank, in_features, out_features, parts.kind, flipped, parts.magnitude is not None
    )


def _features(kind: str, base_shape: tuple[int, ...], fan_in_fan_out: bool) -> tuple[int, int]:
    """(in_features, out_features) of a base weight as PEFT sees the layer."""
    first, second = base_shape
    if kind == "embedding":  # (num_embeddings, embedding_dim)
        return first, second
    return (first, second) if fan_in_fan_out else (second, first)


def _shape_mismatch(
    name: str,
    kind: str,
    a: TensorInfo,
    b: TensorInfo,
    base_key: str,
    base_shape: tuple[int, ...],
    fan_in_fan_out: bool,
) -> str:
    rank = a.shape[0]
    in_f, out_f = _features(kind, base_shape, fan_in_fan_out)
    if kind == "embedding":
        layout = "an Embedding weight stored (num_embeddings, embedding_dim)"
    elif fan_in_fan_out:
        layout = "stored (in, out) since fan_in_fan_out=true"
    else:
        layout = "stored (out, in) since fan_in_fan_out=false"
    message = (
        f"module {name!r}: A {fmt(a.shape)} and B {fmt(b.shape)} do not fit base weight "
        f"{base_key!r} {fmt(base_shape)}, {layout}: A must be ({rank}, {in_f}) and B ({out_f}, {rank})."
    )
    other_in, other_out = _features(kind, base_shape, not fan_in_fan_out)
    if kind == "linear" and a.shape[1] == other_in and b.shape[0] == other_out:
        value = str(not fan_in_fan_out).lower()
        return f"{message} They fit with fan_in_fan_out={value} (true only for GPT-2 style Conv1D layers)."
    return f"{message} Is the adapter for a different base model?"


def _attach_magnitudes(found: _Sorted, config: LoraConfig, problems: list[str]) -> None:
    """Each DoRA magnitude vector joins its module's parts; one without a LoRA module is refused."""
    for module, info in sorted(found.magnitudes.items()):
        if not config.use_dora:
            problems.append(
                f"unexpected tensor {info.name!r}: a DoRA magnitude vector, but adapter_config.json has "
                "use_dora=false; set use_dora to true or remove it."
            )
        elif module not in found.lora:
            problems.append(
                f"orphan tensor {info.name!r}: a DoRA magnitude vector of a module without lora_A/lora_B; "
                "re-save the adapter with PEFT."
            )
        else:
            found.lora[module].magnitude = info


def _check_magnitude(
    name: str, parts: _Parts, config: LoraConfig, out_features: int, problems: list[str]
) -> None:
    """DoRA: one magnitude per output feature (rows of W in (out, in) form; embedding_dim for embeddings)."""
    magnitude = parts.magnitude
    if magnitude is None:
        if config.use_dora:
            problems.append(
                f"module {name!r} lacks {PREFIX}{name}{MAGNITUDE_SUFFIX} although adapter_config.json has "
                "use_dora=true; re-save the adapter with PEFT or set use_dora to false."
            )
    elif magnitude.shape != (out_features,):
        problems.append(
            f"tensor {magnitude.name!r} has shape {fmt(magnitude.shape)} but module {name!r} has "
            f"{out_features} output features; a DoRA magnitude vector is ({out_features},): one per output."
        )


def _check_bias(name: str, parts: _Parts, config: LoraConfig, out_features: int, problems: list[str]) -> None:
    bias = parts.bias
    if bias is not None and not config.lora_bias:
        problems.append(
            f"unexpected tensor {bias.name!r}: adapter_config.json has lora_bias=false; "
            "set lora_bias to true or remove the bias."
        )
    elif bias is not None and bias.shape != (out_features,):
        problems.append(
            f"tensor {bias.name!r} has shape {fmt(bias.shape)} but module {name!r} has "
            f"{out_features} outputs; lora_B.bias must be ({out_features},)."
        )
    elif bias is None and config.lora_bias and parts.kind == "linear":
        problems.append(
            f"module {name!r} lacks {_key(name, 'linear', 'bias')!r} although adapter_config.json has "
            "lora_bias=true; re-save the adapter or set lora_bias to false."
        )


def _check_base_copies(found: _Sorted, index: WeightIndex[WeightShape], problems: list[str]) -> None:
    """``M.base_layer.weight`` is allowed for a LoRA'd module M and must equal M's base weight in shape."""
    for module, info in sorted(found.base_copies.items()):
        if module not in found.lora:
            problems.append(
                f"unexpected tensor {info.name!r}: a base_layer copy of a module that has no LoRA tensors; "
                "remove it or re-save the adapter with PEFT."
            )
            continue
        base_key, _ = index.resolve(module)
        if base_key is not None and info.shape != index.weights[base_key].shape:
            problems.append(
                f"tensor {info.name!r} {fmt(info.shape)} is a copy of base weight {base_key!r} but the base "
                f"has {fmt(index.weights[base_key].shape)}; was the vocabulary resized during training?"
            )


def check_saved_modules(
    saved: dict[str, dict[str, TensorInfo]], index: WeightIndex[WeightShape], problems: list[str]
) -> list[SavedModule]:
    """Full weights of ``modules_to_save`` must match the base weight but for the rows (a resized vocabulary
    or label set, which is allowed and reported); a bias must match the saved weight's rows."""
    found = []
    for module, params in sorted(saved.items()):
        base_key = resolve(module, index, problems, what="module in modules_to_save")
        if base_key is None:
            continue
        base_shape = index.weights[base_key].shape
        weight, bias = params.get("weight"), params.get("bias")
        if weight is None:
            problems.append(
                f"tensor {bias.name if bias else module!r}: modules_to_save module {module!r} has a bias but "
                "no weight; re-save the adapter with PEFT."
            )
            continue
        if len(weight.shape) != 2 or weight.shape[1:] != base_shape[1:]:
            problems.append(
                f"tensor {weight.name!r} {fmt(weight.shape)} (modules_to_save) must have the shape of base "
                f"weight {base_key!r} {fmt(base_shape)} (only the rows may differ: a resized vocabulary)."
            )
            continue
        if bias is not None and bias.shape != weight.shape[:1]:
            problems.append(
                f"tensor {bias.name!r} {fmt(bias.shape)} (modules_to_save) must be ({weight.shape[0]},) to "
                f"match its weight {weight.name!r} {fmt(weight.shape)}."
            )
            continue
        found.append(SavedModule(module, base_key, weight.shape, base_shape, bias is not None))
    return found


def resolve(
    name: str, index: WeightIndex[WeightShape], problems: list[str], *, what: str = "module"
) -> str | None:
    base_key, candidates = index.resolve(name)
    if base_key is not None:
        return base_key
    if candidates:
        shown = ", ".join(repr(c) for c in candidates[:5])
        problems.append(
            f"{what} {name!r} matches several base weights by suffix ({shown}); name the module "
            "as the base does so that it matches one weight exactly."
        )
    else:
        near = index.near(name)
        hint = f" (the base has e.g. {', '.join(repr(k) for k in near)})" if near else ""
        problems.append(
            f"{what} {name!r} is not in the base model: it has no weight {name + '.weight'!r} nor one that "
            f"differs only by a leading prefix{hint}; is the adapter for a different base model?"
        )
    return None


def _key(module: str, kind: str, role: str) -> str:
    suffix = next(s for s, (k, r) in LORA_SUFFIXES.items() if k == kind and r == role)
    return f"{PREFIX}{module}{suffix}"


def fmt(shape: tuple[int, ...]) -> str:
    return f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"


def _summary(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"Invalid LoRA adapter: {problems[0]}"
    listed = "\n".join(f"- {p}" for p in problems[:_MAX_LISTED])
    more = f"\n- ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    return f"Invalid LoRA adapter ({len(problems)} problems):\n{listed}{more}"
