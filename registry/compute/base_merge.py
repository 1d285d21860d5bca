"""Merge a LoRA adapter into its base model's safetensors weights: ``W' = W + s·B·A`` per targeted weight.

The output has the base's shard layout, byte for byte: each shard is first copied whole (the kernel copies
it, ``copy_file_range``/reflink where the filesystem can), then every targeted weight is read alone from the
copy, updated in place (one fused ``addmm_``, see ``_add_delta``; ``W + ΔW`` is rounded once into the
weight's dtype) and written back at the same offset. Merging keeps each tensor's dtype and shape, so the
header, the offsets and every untouched tensor are identical to the input.

Peak memory: the largest targeted weight once (twice with ``device`` CUDA: host buffer and device copy),
plus at most 64 MiB of fp32 rows for a half-precision weight, plus the adapter's factors. Nothing else of
the base is held in memory, whatever the shard size.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from registry.adapters.base_manifest import INDEX_FILE, SINGLE_FILE
from registry.adapters.safetensors_header import SafetensorsHeader, TensorInfo, parse_header_file
from registry.adapters.weight_names import WeightIndex
from registry.compute.device import select_device
from registry.compute.lora import IncompatibleAdapters, LoraAdapter, LoraModule

TORCH_DTYPES: dict[str, torch.dtype] = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}
# Weights of other formats and stray safetensors files: copying them next to merged weights would let a
# loader pick up the unmerged ones.
_BLOCK_ELEMENTS = 1 << 24  # fp32 values per block when a half-precision weight is accumulated in fp32
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".index.json")


@dataclass(frozen=True)
class SafetensorsWeights:
    """The safetensors weights of a model directory: each shard's header and which shard holds each tensor."""

    directory: Path
    headers: dict[str, SafetensorsHeader]  # file name -> header
    locations: dict[str, str]  # tensor name -> file name
    index: dict[str, Any] | None  # the parsed model.safetensors.index.json of a sharded model

    def info(self, name: str) -> TensorInfo:
        return self.headers[self.locations[name]].tensors[name]

    def read(self, name: str) -> torch.Tensor:
        """One float tensor, read alone from its shard into a fresh CPU tensor of its own dtype."""
        shard = self.locations[name]
        info = self.headers[shard].tensors[name]
        with (self.directory / shard).open("rb") as handle:
            return _read_tensor(handle, self.headers[shard].data_start, info)


def read_weights(directory: Path) -> SafetensorsWeights:
    """Index the weights of ``directory``: ``model.safetensors``, else the shards of its index file."""
    directory = Path(directory)
    if (directory / SINGLE_FILE).is_file():
        header = parse_header_file(directory / SINGLE_FILE)
        return SafetensorsWeights(
            directory, {SINGLE_FILE: header}, dict.fromkeys(header.tensors, SINGLE_FILE), None
        )
    if not (directory / INDEX_FILE).is_file():
        raise FileNotFoundError(
            f"{directory} has neither {SINGLE_FILE} nor {INDEX_FILE}; save the model with "
            "save_pretrained(..., safe_serialization=True) or convert its weights to safetensors."
        )
    index = json.loads((directory / INDEX_FILE).read_text())
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{directory / INDEX_FILE} has no weight_map naming the shard of each tensor.")
    headers = {}
    for shard in sorted(set(weight_map.values())):
        if not isinstance(shard, str) or Path(shard).name != shard or not (directory / shard).is_file():
            raise FileNotFoundError(
                f"{INDEX_FILE} names shard {shard!r}, which is not a file in {directory}."
            )
        headers[shard] = parse_header_file(directory / shard)
    locations: dict[str, str] = {}
    for shard, header in headers.items():
        for name in header.tensors:
            if name in locations:
                raise ValueError(
                    f"tensor {name!r} is in both {locations[name]!r} and {shard!r} in {directory}."
                )
            locations[name] = shard
    if locations.keys() != weight_map.keys() or any(weight_map[n] != s for n, s in locations.items()):
        raise ValueError(
            f"{directory / INDEX_FILE} does not list exactly the tensors its shards hold; "
            "the index and the shards do not belong together."
        )
    return SafetensorsWeights(directory, headers, locations, index)


def merge_into_base(
    adapter: LoraAdapter, base_dir: Path, out_dir: Path, *, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Write ``base_dir`` with ``adapter`` merged in to ``out_dir`` (which must not exist or be empty).

    Matches PEFT's ``merge_and_unload()``. Every adapter module must resolve to one base weight (exact
    ``<module>.weight``, else the unique dot-boundary suffix match) of the right shape and a float dtype,
    else ``IncompatibleAdapters`` is raised before anything is written. Non-weight files (config.json,
    tokenizer, generation_config.json) are copied, so the output loads with ``from_pretrained``. The output
    is assembled in a staging directory next to ``out_dir`` and renamed into place when complete.
    """
    if sys.byteorder != "little":
        raise RuntimeError("safetensors data is little-endian; merging on a big-endian host is not supported")
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    dev = select_device(device) if isinstance(device, str) else device
    _refuse_unsupported(adapter)
    weights = read_weights(base_dir)
    plan = _plan(adapter, weights)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not an empty directory; choose a new one.")
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        report = _write(adapter, weights, plan, staging, dev)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _refuse_unsupported(adapter: LoraAdapter) -> None:
    config = adapter.config
    if config.get("lora_bias"):
        raise IncompatibleAdapters(
            "the adapter has lora_bias=true; its lora_B.bias tensors are not loaded, so merging it would "
            "silently drop them. Merge it with PEFT's merge_and_unload instead."
        )
    if config.get("modules_to_save"):
        raise IncompatibleAdapters(
            f"the adapter has modules_to_save {config['modules_to_save']!r}: full weights that replace base "
            "modules and are not loaded as LoRA factors. Merge it with PEFT's merge_and_unload instead."
        )
    if not adapter.modules:
        raise IncompatibleAdapters("the adapter has no LoRA modules; there is nothing to merge.")


def _plan(adapter: LoraAdapter, weights: SafetensorsWeights) -> dict[str, str]:
    """adapter module -> base tensor name, after checking every module; raises listing all problems."""
    index = WeightIndex({name: weights.info(name) for name in weights.locations})
    plan: dict[str, str] = {}
    problems = []
    for name, module in sorted(adapter.modules.items()):
        key, candidates = index.resolve(name)
        if key is None:
            if candidates:
                problems.append(f"module {name!r} matches several base weights ({', '.join(candidates[:5])})")
            else:
                near = index.near(name)
                hint = f"; the base has e.g. {', '.join(repr(k) for k in near)}" if near else ""
                problems.append(
                    f"module {name!r} has no weight in the base "
                    f"({name + '.weight'!r} or a prefix variant{hint})"
                )
            continue
        info = weights.info(key)
        expected = module.shape[::-1] if module.transposed_in_base else module.shape
        if tuple(info.shape) != tuple(expected):
            layout = "(in, out)" if module.transposed_in_base else "(out, in)"
            problems.append(
                f"module {name!r} (A {tuple(module.A.shape)}, B {tuple(module.B.shape)}) needs base weight "
                f"{key!r} stored {layout} = {tuple(expected)}, but it is {tuple(info.shape)}"
            )
        elif info.dtype not in TORCH_DTYPES:
            problems.append(
                f"base weight {key!r} has dtype {info.dtype}; only F16/BF16/F32/F64 can be merged"
            )
        elif key in plan.values():
            other = next(m for m, k in plan.items() if k == key)
            problems.append(f"modules {other!r} and {name!r} both resolve to base weight {key!r}")
        else:
            plan[name] = key
    if problems:
        listed = "\n".join(f"- {p}" for p in problems[:20])
        more = f"\n- ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise IncompatibleAdapters(
            f"the adapter does not fit the base model in {weights.directory} "
            f"({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n{listed}{more}"
        )
    return plan


def _write(
    adapter: LoraAdapter,
    weights: SafetensorsWeights,
    plan: dict[str, str],
    out: Path,
    device: torch.device,
) -> dict[str, Any]:
    by_tensor = {key: name for name, key in plan.items()}
    merged, peak = [], 0
    for shard, header in sorted(weights.headers.items()):
        shutil.copyfile(weights.directory / shard, out / shard)
        targeted = sorted((info for key, info in header.tensors.items() if key in by_tensor), key=_begin)
        if not targeted:
            continue
        with (out / shard).open("r+b") as handle:
            for info in targeted:
                module = adapter.modules[by_tensor[info.name]]
                buffer = bytearray(info.end - info.begin)
                handle.seek(header.data_start + info.begin)
                handle.readinto(buffer)
                weight = torch.frombuffer(buffer, dtype=TORCH_DTYPES[info.dtype]).view(info.shape)
                _add_delta(weight, module, device)
                handle.seek(header.data_start + info.begin)
                handle.write(buffer)
                merged.append({"module": by_tensor[info.name], "tensor": info.name, "shard": shard})
                peak = max(peak, len(buffer))
    if weights.index is not None:
        total = sum(info.end - info.begin for h in weights.headers.values() for info in h.tensors.values())
        metadata = {**(weights.index.get("metadata") or {}), "total_size": total}
        index = {"metadata": metadata, "weight_map": dict(sorted(weights.locations.items()))}
        (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    copied, skipped = _copy_other_files(weights, out)
    return {
        "modules_merged": len(merged),
        "merged": sorted(merged, key=lambda m: m["tensor"]),
        "tensors_copied": len(weights.locations) - len(merged),
        "shards_written": sorted(weights.headers),
        "index_written": weights.index is not None,
        "bytes_written": sum((out / shard).stat().st_size for shard in weights.headers),
        "bytes_merged": sum(weights.info(m["tensor"]).end - weights.info(m["tensor"]).begin for m in merged),
        "peak_tensor_bytes": peak,
        "files_copied": copied,
        "files_skipped": skipped,
        "device": str(device),
    }


def _add_delta(weight: torch.Tensor, module: LoraModule, device: torch.device) -> None:
    """``weight += scale·B·A`` (or its transpose) in place, rounded once into the weight's dtype.

    One fused ``addmm_`` in the weight's dtype when the factors are exact in it (fp32 weights with fp32
    factors, bf16 weights with an adapter trained in bf16): the GEMM accumulates in fp32 and rounds once.
    Otherwise (fp32 factors into a bf16/fp16 weight) rounding the factors would cost accuracy where
    ``W + ΔW`` nearly cancels, so blocks of rows are accumulated in fp32 and rounded once, like PEFT's
    fp32 ``ΔW`` added into the weight, with at most ``_BLOCK_ELEMENTS`` fp32 values alive.
    """
    work = weight if device.type == "cpu" else weight.to(device)
    left, right = (module.A.T, module.B.T) if module.transposed_in_base else (module.B, module.A)
    left, right = left.to(device), right.to(device)
    if _exact_in(left, work.dtype) and _exact_in(right, work.dtype):
        work.addmm_(left.to(work.dtype), right.to(work.dtype), alpha=module.scale)
    else:
        right = right.float()
        step = max(1, _BLOCK_ELEMENTS // max(work.shape[1], 1))
        for start in range(0, work.shape[0], step):
            rows = work[start : start + step]
            rows.copy_(
                torch.addmm(rows.float(), left[start : start + step].float(), right, alpha=module.scale)
            )
    if work is not weight:
        weight.copy_(work)


def _exact_in(tensor: torch.Tensor, dtype: torch.dtype) -> bool:
    return tensor.dtype == dtype or torch.equal(tensor.to(dtype).to(tensor.dtype), tensor)


def _copy_other_files(weights: SafetensorsWeights, out: Path) -> tuple[list[str], list[str]]:
    copied, skipped = [], []
    for path in sorted(weights.directory.iterdir()):
        if path.name in weights.headers or path.name == INDEX_FILE:
            continue
        if not path.is_file() or path.name.endswith(_WEIGHT_SUFFIXES):
            skipped.append(path.name)
            continue
        shutil.copyfile(path, out / path.name)
        copied.append(path.name)
    return copied, skipped


def _begin(info: TensorInfo) -> int:
    return info.begin


def _read_tensor(handle: Any, data_start: int, info: TensorInfo) -> torch.Tensor:
    dtype = TORCH_DTYPES.get(info.dtype)
    if dtype is None:
        raise ValueError(f"tensor {info.name!r} has dtype {info.dtype}; only F16/BF16/F32/F64 can be read")
    if info.end == info.begin:
        return torch.empty(info.shape, dtype=dtype)
    buffer = bytearray(info.end - info.begin)
    handle.seek(data_start + info.begin)
    if handle.readinto(buffer) != len(buffer):
        raise ValueError(f"tensor {info.name!r} is truncated in {getattr(handle, 'name', 'its file')}")
    return torch.frombuffer(buffer, dtype=dtype).view(info.shape)
