"""Parse a PEFT ``adapter_config.json`` and answer per-module rank, alpha and scaling.

LoRA (with DoRA, ``lora_bias``, ``modules_to_save``) is read in full; LoHa, LoKr, IA3, VeRA and AdaLoRA
configs are read for what their checks and ``merge-base`` need (``OTHER_PEFT_TYPES``).

Pattern semantics follow PEFT 0.21 (``peft.utils.other.get_pattern_key`` as used by
``LoraModel._create_and_replace``): the first ``rank_pattern``/``alpha_pattern`` key (in file order) for
which ``re.match(rf"(.*\\.)?({key})$", module)`` succeeds wins, where ``module`` is the module's name in
the model, e.g. ``model.layers.0.self_attn.q_proj``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import InvalidAdapter

FILENAME = "adapter_config.json"

#: PEFT types other than LoRA that are stored, versioned and checked against the base (by tensor names and
#: shapes, see ``compatibility``); only ``merge-base`` computes with some of them (IA3, LoHa).
OTHER_PEFT_TYPES = ("LOHA", "LOKR", "IA3", "VERA", "ADALORA")
PEFT_TYPES = ("LORA", *OTHER_PEFT_TYPES)
MERGE_BASE_TYPES = ("IA3", "LOHA")  # the other types merge-base computes with (jobs take LoRA alone)

# Options that change the tensor layout or the math away from ΔW = s·B·A, with what to do instead.
_UNSUPPORTED_OPTIONS: dict[str, str] = {
    "use_qalora": "QALoRA adapters are not supported (their lora_A acts on pooled inputs).",
    "use_bdlora": "BD-LoRA (block-diagonal) adapters are not supported.",
    "kasa_config": "KaSA adapters are not supported (they add a lora_diag and modify the base weight).",
    "monteclora_config": "MonteCLoRA adapters are not supported.",
    "arrow_config": "Arrow-routed adapters are not supported.",
    "alora_invocation_tokens": "Activated LoRA (aLoRA) adapters are not supported.",
    "layer_replication": "adapters with layer_replication are not supported (they change the base's layers).",
    "target_parameters": "LoRA on nn.Parameter (target_parameters) is not supported; target modules instead.",
    "trainable_token_indices": "trainable_token_indices (trainable tokens) is not supported.",
}


def pattern_key(patterns: Iterable[str], module: str) -> str | None:
    """The first pattern that PEFT would apply to ``module``, or None."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


@dataclass(frozen=True, slots=True)
class LoraConfig:
    """The fields of a PEFT LoRA config that the registry checks and computes with."""

    peft_type: str
    r: int
    lora_alpha: float
    target_modules: tuple[str, ...] | str | None  # a str is a regex (fullmatch) in PEFT
    use_rslora: bool
    fan_in_fan_out: bool
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    base_model_name_or_path: str | None
    revision: str | None
    use_dora: bool
    modules_to_save: tuple[str, ...] | None
    lora_bias: bool
    task_type: str | None
    raw: dict[str, Any]

    def rank_for(self, module: str) -> int:
        """The rank PEFT gives ``module`` (``r`` unless a ``rank_pattern`` key matches)."""
        key = pattern_key(self.rank_pattern, module)
        return self.r if key is None else self.rank_pattern[key]

    def alpha_for(self, module: str) -> float:
        """The lora_alpha PEFT gives ``module`` (``lora_alpha`` unless an ``alpha_pattern`` key matches)."""
        key = pattern_key(self.alpha_pattern, module)
        return self.lora_alpha if key is None else self.alpha_pattern[key]

    def scaling_for(self, module: str) -> float:
        """PEFT's ``LoraLayer.scaling``: alpha / r, or alpha / sqrt(r) under ``use_rslora``."""
        rank = self.rank_for(module)
        alpha = self.alpha_for(module)
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank


def parse_adapter_config(data: bytes) -> LoraConfig:
    """Parse and validate ``adapter_config.json``; raises ``InvalidAdapter`` saying what to fix."""
    raw = _load_object(data)
    peft_type = raw.get("peft_type")
    if peft_type not in PEFT_TYPES:
        shown = "missing" if peft_type is None else repr(peft_type)
        raise InvalidAdapter(
            f'{FILENAME}: peft_type is {shown}; the registry takes LoRA adapters (peft_type "LORA") and '
            f"PEFT's {', '.join(OTHER_PEFT_TYPES)}."
        )
    if peft_type != "LORA":
        return _other_type(peft_type, raw)
    for option, message in _UNSUPPORTED_OPTIONS.items():
        if raw.get(option):
            raise InvalidAdapter(f"{FILENAME}: {option}={_show(raw[option])}: {message}")
    if "r" not in raw:
        raise InvalidAdapter(f"{FILENAME}: r (the LoRA rank) is missing; set it to a positive integer.")
    rank_pattern = _pattern_dict(raw, "rank_pattern", integer=True)
    alpha_pattern = _pattern_dict(raw, "alpha_pattern", integer=False)
    return LoraConfig(
        peft_type=peft_type,
        r=_positive(raw["r"], "r", integer=True),
        lora_alpha=_positive(raw.get("lora_alpha", 8), "lora_alpha", integer=False),
        target_modules=_target_modules(raw.get("target_modules")),
        use_rslora=_flag(raw, "use_rslora"),
        fan_in_fan_out=_flag(raw, "fan_in_fan_out"),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        base_model_name_or_path=_optional_str(raw, "base_model_name_or_path"),
        revision=_optional_str(raw, "revision"),
        use_dora=_flag(raw, "use_dora"),
        modules_to_save=_modules_to_save(raw.get("modules_to_save")),
        lora_bias=_flag(raw, "lora_bias"),
        task_type=_optional_str(raw, "task_type"),
        raw=raw,
    )


def _other_type(peft_type: str, raw: dict[str, Any]) -> LoraConfig:
    """A LoHa/LoKr/IA3/VeRA/AdaLoRA config: the fields the checks use; ``r`` is 0 where the type has none
    (IA3). AdaLoRA's ``rank_pattern`` holds per-module masks (lists of booleans), not ranks, so it and
    ``alpha_pattern`` are read only where they mean what they mean for LoRA (LoHa, LoKr)."""
    rank = raw.get("r")
    rank = 0 if peft_type == "IA3" or rank is None else _positive(rank, "r", integer=True)
    patterns = peft_type in ("LOHA", "LOKR")
    alpha_field = "alpha" if patterns else "lora_alpha"
    alpha = raw.get(alpha_field, 8)
    return LoraConfig(
        peft_type=peft_type,
        r=rank,
        lora_alpha=_positive(alpha, alpha_field, integer=False) if peft_type != "IA3" else 1,
        target_modules=_target_modules(raw.get("target_modules")),
        use_rslora=False,
        fan_in_fan_out=_flag(raw, "fan_in_fan_out"),
        rank_pattern=_pattern_dict(raw, "rank_pattern", integer=True) if patterns else {},
        alpha_pattern=_pattern_dict(raw, "alpha_pattern", integer=False) if patterns else {},
        base_model_name_or_path=_optional_str(raw, "base_model_name_or_path"),
        revision=_optional_str(raw, "revision"),
        use_dora=False,
        modules_to_save=_modules_to_save(raw.get("modules_to_save")),
        lora_bias=False,
        task_type=_optional_str(raw, "task_type"),
        raw=raw,
    )


def _load_object(data: bytes | str) -> dict[str, Any]:
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes | bytearray) else data
        value = json.loads(text)
    except UnicodeDecodeError as exc:
        raise InvalidAdapter(
            f"{FILENAME} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON."
        ) from None
    except RecursionError:
        raise InvalidAdapter(f"{FILENAME} is nested too deeply to be an adapter config.") from None
    except ValueError as exc:
        raise InvalidAdapter(f"{FILENAME} is not valid JSON ({exc}); fix or regenerate it.") from None
    if not isinstance(value, dict):
        raise InvalidAdapter(f"{FILENAME} must be a JSON object, got {type(value).__name__}.")
    return value


def _positive(value: Any, field: str, *, integer: bool) -> Any:
    """``value`` if it is a positive int (or, unless ``integer``, a positive finite number)."""
    valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
    if valid and not integer:
        try:
            valid = math.isfinite(float(value))
        except OverflowError:
            valid = False
    elif not integer and isinstance(value, float):
        valid = math.isfinite(value) and value > 0
    if not valid:
        kind = "integer" if integer else "number"
        raise InvalidAdapter(f"{FILENAME}: {field} must be a positive {kind}, got {_show(value)}.")
    return value


def _pattern_dict(raw: Mapping[str, Any], field: str, *, integer: bool) -> dict[str, Any]:
    value = raw.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidAdapter(
            f"{FILENAME}: {field} must be an object mapping module-name patterns to values, "
            f"got {_show(value)}."
        )
    for key, item in value.items():
        _positive(item, f"{field}[{key!r}]", integer=integer)
        try:
            re.compile(rf"(.*\.)?({key})$")
        except re.error as exc:
            raise InvalidAdapter(
                f"{FILENAME}: {field} key {key!r} is not a valid regular expression ({exc})."
            ) from None
    return dict(value)


def _target_modules(value: Any) -> tuple[str, ...] | str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InvalidAdapter(
        f"{FILENAME}: target_modules must be a list of module names, a regex string or null, "
        f"got {_show(value)}."
    )


def _modules_to_save(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return tuple(value)
    raise InvalidAdapter(
        f"{FILENAME}: modules_to_save must be a list of module names or null, got {_show(value)}."
    )


def _flag(raw: Mapping[str, Any], field: str) -> bool:
    value = raw.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidAdapter(f"{FILENAME}: {field} must be true or false, got {_show(value)}.")
    return value


def _optional_str(raw: Mapping[str, Any], field: str) -> str | None:
    value = raw.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidAdapter(f"{FILENAME}: {field} must be a string or null, got {_show(value)}.")
    return value


def _show(value: Any, limit: int = 120) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."
