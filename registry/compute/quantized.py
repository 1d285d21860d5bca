"""Merging into a bitsandbytes-quantized base, as PEFT's ``merge_and_unload`` does on a 4-bit or 8-bit model:
dequantize each quantized weight, merge in fp32, requantize it with the same settings (bitsandbytes needed).

The base's quantized weights are dequantized into an fp32 copy of the base (a staging directory beside the
output), the adapter is merged into that copy by :func:`registry.compute.base_merge.merge_into_base`, and
every quantized weight the merge changed is quantized again from its fp32 value (4-bit: the same quant type,
block size, double quantization and storage; 8-bit: LLM.int8()'s row-wise absmax), as PEFT quantizes
``W + ΔW``: its quant state's dtype becomes float32, as PEFT's does. Every other tensor is the base's.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from registry.adapters.base_manifest import INDEX_FILE, SINGLE_FILE
from registry.adapters.bnb import QUANT_STATE
from registry.compute.lora import IncompatibleAdapters, LoraAdapter

Merge = Callable[[LoraAdapter, Path, Path], dict[str, Any]]
_FOUR_BIT_PARTS = ("absmax", "quant_map", "nested_absmax", "nested_quant_map")
_EIGHT_BIT_PARTS = ("SCB", "weight_format")


def is_quantized(base_dir: Path) -> bool:
    """Whether config.json says the base is bitsandbytes-quantized (transformers writes it so)."""
    config_path = Path(base_dir) / "config.json"
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text())
    except ValueError:
        return False
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    return isinstance(quantization, dict) and quantization.get("quant_method") == "bitsandbytes"


def merge_into_quantized(adapter: LoraAdapter, base_dir: Path, out_dir: Path, merge: Merge) -> dict[str, Any]:
    """Dequantize ``base_dir`` into fp32, ``merge`` the adapter into it, requantize into ``out_dir``."""
    functional = _bitsandbytes(base_dir)
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not an empty directory; choose a new one.")
    work = out_dir.parent / f".{out_dir.name}.dequantized-{uuid.uuid4().hex[:8]}"
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        shards = _shards(base_dir)
        states = _dequantize(functional, base_dir, shards, work / "base")
        report = merge(adapter, work / "base", work / "merged")
        if report.get("resized"):
            raise IncompatibleAdapters(
                "the adapter resizes the vocabulary; merge it into the full-precision base instead of a "
                "quantized one"
            )
        changed = {m["tensor"] for m in report["merged"]}
        staging.mkdir(parents=True)
        requantized = _requantize(functional, base_dir, shards, work / "merged", states, changed, staging)
        for path in sorted(base_dir.iterdir()):  # config.json keeps its quantization_config
            if path.is_file() and path.name not in shards and path.name != INDEX_FILE:
                shutil.copyfile(path, staging / path.name)
        if (base_dir / INDEX_FILE).is_file():
            _write_index(base_dir, staging)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kinds = sorted({state["kind"] for state in states.values()})
    return {
        **report,
        "quantization": "+".join(f"bnb-{k}" for k in kinds),
        "requantized": requantized,
        "shards_written": sorted(shards),
        "bytes_written": sum((out_dir / shard).stat().st_size for shard in shards),
    }


def _bitsandbytes(base_dir: Path) -> Any:
    try:
        import bitsandbytes.functional as functional  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        raise IncompatibleAdapters(
            f"the base in {base_dir} is bitsandbytes-quantized; merging into it dequantizes, merges and "
            "requantizes with bitsandbytes, which is not installed here (pip install bitsandbytes), or "
            "merge into its full-precision base instead"
        ) from None
    return functional


def _shards(base_dir: Path) -> list[str]:
    if (base_dir / SINGLE_FILE).is_file():
        return [SINGLE_FILE]
    index = json.loads((base_dir / INDEX_FILE).read_text())
    return sorted(set(index["weight_map"].values()))


def _dequantize(functional: Any, base_dir: Path, shards: list[str], out: Path) -> dict[str, dict[str, Any]]:
    """Write the base with every quantized weight dequantized to fp32 (its quant tensors left out) into
    ``out``; return each quantized weight's state: its kind and its quant tensors."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    states: dict[str, dict[str, Any]] = {}
    weight_map: dict[str, str] = {}
    for shard in shards:
        tensors = load_file(base_dir / shard)
        plain: dict[str, torch.Tensor] = {}
        for name, tensor in tensors.items():
            if QUANT_STATE in name or name.rpartition(".")[2] in _FOUR_BIT_PARTS + _EIGHT_BIT_PARTS:
                continue
            if f"{name}.absmax" in tensors:
                parts = {
                    k.removeprefix(f"{name}."): v for k, v in tensors.items() if k.startswith(f"{name}.")
                }
                state = functional.QuantState.from_dict(parts, device=torch.device("cpu"))
                plain[name] = functional.dequantize_4bit(tensor, state).float()
                states[name] = {"kind": state.quant_type, "state": state, "parts": sorted(parts)}
            elif (scb := name.removesuffix(".weight") + ".SCB") in tensors and tensor.dtype == torch.int8:
                plain[name] = functional.int8_vectorwise_dequant(tensor, tensors[scb]).float()
                states[name] = {"kind": "int8"}
            else:
                plain[name] = tensor
            weight_map[name] = shard
        save_file(plain, out / shard, metadata={"format": "pt"})
    if len(shards) > 1:
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (out / INDEX_FILE).write_text(json.dumps(index))
    for path in base_dir.iterdir():
        if path.is_file() and path.name not in shards and path.name != INDEX_FILE:
            shutil.copyfile(path, out / path.name)
    config = json.loads((base_dir / "config.json").read_text())
    config.pop("quantization_config")  # the copy is full precision (and merges as such)
    (out / "config.json").write_text(json.dumps(config))
    return states


def _requantize(
    functional: Any,
    base_dir: Path,
    shards: list[str],
    merged_dir: Path,
    states: dict[str, dict[str, Any]],
    changed: set[str],
    out: Path,
) -> list[str]:
    """Write each shard of the base with the merged tensors: the quantized ones quantized again."""
    from safetensors.torch import load_file, save_file

    requantized = []
    for shard in shards:
        tensors = load_file(base_dir / shard)
        merged = load_file(merged_dir / shard)
        for name in sorted(changed & merged.keys()):
            state = states.get(name)
            if state is None:
                tensors[name] = merged[name]
                continue
            requantized.append(name)
            if state["kind"] == "int8":
                quantized, scales, _ = functional.int8_vectorwise_quant(merged[name].half())
                tensors[name] = quantized
                tensors[name.removesuffix(".weight") + ".SCB"] = scales
                continue
            old = state["state"]
            packed, new = functional.quantize_4bit(
                merged[name],
                blocksize=old.blocksize,
                compress_statistics=old.nested,
                quant_type=old.quant_type,
                quant_storage=tensors[name].dtype,
            )
            tensors[name] = packed
            for part, value in new.as_dict(packed=True).items():
                tensors[f"{name}.{part}"] = value
        save_file(tensors, out / shard, metadata={"format": "pt"})
    return requantized


def _write_index(base_dir: Path, out: Path) -> None:
    index = json.loads((base_dir / INDEX_FILE).read_text())
    total = sum((out / shard).stat().st_size for shard in set(index["weight_map"].values()))
    index["metadata"] = {**(index.get("metadata") or {}), "total_size": total}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
