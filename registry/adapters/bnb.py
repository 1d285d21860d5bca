"""bitsandbytes-quantized safetensors, as transformers' ``save_pretrained`` writes them: each quantized
weight's logical (dequantized) shape and dtype, read from headers and the quant states' JSON, never torch.

4-bit (``Params4bit``, NF4 or FP4): a weight ``W`` is stored packed, two values a byte, as a
(⌈n/2⌉, 1) tensor of its quant storage dtype (uint8 by default), beside ``QuantState.as_dict(packed=True)``:
``W.absmax`` (one scale per block), ``W.quant_map`` (the 16 code values), with double quantization
``W.nested_absmax`` and ``W.nested_quant_map``, and ``W.quant_state.bitsandbytes__nf4`` (or ``__fp4``): a
uint8 vector holding the UTF-8 JSON of ``{quant_type, blocksize, dtype, shape}`` (double quantization adds
``nested_blocksize``, ``nested_dtype``, ``nested_offset``). 8-bit (``Int8Params``, LLM.int8()): ``W`` is
int8 at its logical (out, in) shape, beside ``<module>.SCB`` (one fp32 scale per output row) and
``<module>.weight_format``; its logical dtype is the model's (config.json's ``torch_dtype``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry.adapters.safetensors_header import TensorInfo
from registry.errors import InvalidInput

QUANT_STATE = ".quant_state.bitsandbytes__"
FOUR_BIT = ("nf4", "fp4")
KINDS = ("bnb-nf4", "bnb-fp4", "bnb-int8")  # how manifests name a weight's quantization
MAX_QUANT_STATE = 64 * 1024  # bytes of one quant state's JSON
TORCH_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "float64": "F64"}
_STATE_KEYS = {
    "quant_type",
    "blocksize",
    "dtype",
    "shape",
    "nested_blocksize",
    "nested_dtype",
    "nested_offset",
}


@dataclass(frozen=True, slots=True)
class QuantizedWeight:
    shape: tuple[int, ...]  # logical: as the dequantized weight is
    dtype: str  # logical, a safetensors dtype name (BF16, F16, F32)
    kind: str  # one of KINDS


def quantized_weights(
    tensors: dict[str, TensorInfo], read: Callable[[str], bytes], *, where: str, model_dtype: str | None
) -> dict[str, QuantizedWeight]:
    """The bitsandbytes-quantized weights among ``tensors`` (every shard's, by name), by weight name.
    ``read(name)`` returns a small tensor's bytes (the quant states); ``model_dtype`` is config.json's
    ``torch_dtype`` as a safetensors dtype name (8-bit weights are dequantized into it; F16 if None)."""
    found: dict[str, QuantizedWeight] = {}
    for key, info in tensors.items():
        weight, marker, quant_type = key.rpartition(QUANT_STATE)
        if marker:
            found[weight] = _four_bit(weight, quant_type, info, tensors, read, where)
    for key, scales in tensors.items():
        if not key.endswith(".SCB"):
            continue
        name = key.removesuffix(".SCB") + ".weight"
        weight_info = tensors.get(name)
        if weight_info is None or weight_info.dtype != "I8" or len(weight_info.shape) != 2:
            continue  # an int8 optimizer's or another library's scales: not a quantized weight
        if scales.shape != weight_info.shape[:1]:
            raise InvalidInput(
                f"{where}: {key} has shape {list(scales.shape)}, but the 8-bit weight {name} "
                f"{list(weight_info.shape)} needs one scale per output row ([{weight_info.shape[0]}])"
            )
        found[name] = QuantizedWeight(weight_info.shape, model_dtype or "F16", "bnb-int8")
    return found


def _four_bit(
    weight: str,
    quant_type: str,
    state: TensorInfo,
    tensors: dict[str, TensorInfo],
    read: Callable[[str], bytes],
    where: str,
) -> QuantizedWeight:
    def bad(problem: str) -> InvalidInput:
        return InvalidInput(
            f"{where}: the 4-bit weight {weight} {problem}; save the quantized model again with "
            "transformers' save_pretrained (bitsandbytes quant states in safetensors)"
        )

    if quant_type not in FOUR_BIT:
        raise bad(f"has a quant state for {quant_type!r}, not one of {', '.join(FOUR_BIT)}")
    if state.dtype != "U8" or len(state.shape) != 1 or state.end - state.begin > MAX_QUANT_STATE:
        raise bad(f"has a quant state of {state.dtype} {list(state.shape)}, not a uint8 vector of JSON")
    try:
        values = json.loads(read(state.name).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("has a quant state that is not UTF-8 JSON") from None
    if not isinstance(values, dict) or not {"quant_type", "blocksize", "dtype", "shape"} <= values.keys():
        raise bad("has a quant state without quant_type, blocksize, dtype and shape")
    if unknown := sorted(set(values) - _STATE_KEYS):
        raise bad(f"has unknown quant state fields {unknown}")
    shape, blocksize, dtype = values["shape"], values["blocksize"], values["dtype"]
    if values["quant_type"] != quant_type:
        raise bad(f"has quant_type {values['quant_type']!r} in a quant state named for {quant_type}")
    if not isinstance(shape, list) or not shape or not all(_count(dim) for dim in shape):
        raise bad(f"has logical shape {shape!r}, not a list of non-negative integers")
    if not _count(blocksize) or blocksize == 0:
        raise bad(f"has blocksize {blocksize!r}, not a positive integer")
    if dtype not in TORCH_DTYPES:
        raise bad(f"dequantizes to {dtype!r}, not one of {', '.join(TORCH_DTYPES)}")
    packed = tensors.get(weight)
    elements = math.prod(shape)
    if packed is None:
        raise bad("has a quant state but no packed tensor of that name")
    if packed.end - packed.begin != (elements + 1) // 2:
        raise bad(
            f"is stored in {packed.end - packed.begin} bytes, but {elements} 4-bit values "
            f"({list(shape)}) take {(elements + 1) // 2}"
        )
    absmax = tensors.get(f"{weight}.absmax")
    blocks = -(-elements // blocksize)
    if absmax is None or math.prod(absmax.shape) != blocks:
        have = f"{list(absmax.shape)}" if absmax is not None else "none"
        raise bad(f"needs {blocks} absmax values (one per block of {blocksize}), has {have}")
    if f"{weight}.quant_map" not in tensors:
        raise bad("has no quant_map")
    return QuantizedWeight(tuple(shape), TORCH_DTYPES[dtype], f"bnb-{quant_type}")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
