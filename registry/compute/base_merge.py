"""Merge a LoRA adapter into its base model's safetensors weights: ``W' = W + s·B·A`` per targeted weight.

The output has the base's shard layout, byte for byte: each shard is first copied whole (the kernel copies
it, ``copy_file_range``/reflink where the filesystem can), then every targeted weight is read alone from the
copy, updated in place (one fused ``addmm_``, see ``_add_delta``; ``W + ΔW`` is rounded once into the
weight's dtype) and written back at the same offset. Merging keeps each tensor's dtype and shape, so the
header, the offsets and every untouched tensor are identical to the input.

Peak memory: the largest targeted weight once (twice with ``device`` CUDA: host buffer and device copy),
plus at most 64 MiB of fp32 rows for a half-precision weight, plus the adapter's factors. Nothing else of
the base is held in memory, whatever the shard size.

Besides plain LoRA, as PEFT's ``merge_and_unload`` does: DoRA (``W' = m · (W + ΔW) / ‖W + ΔW‖`` per output
feature, in fp32, one fp32 copy of the weight), ``lora_bias`` (the base bias gets ``scale · lora_B.bias``),
``modules_to_save`` (the saved tensors replace the base's, cast to its dtype), IA3 (W, and a non-feedforward
module's bias, scaled by ``ia3_l``) and LoHa (``W + ΔW``). A saved module with other rows than the base's
(a resized vocabulary) changes its shard's header: that shard is written tensor by tensor instead of copied,
and ``config.json``'s ``vocab_size`` follows a resized embedding or head.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from registry.adapters.base_manifest import INDEX_FILE, SINGLE_FILE
from registry.adapters.safetensors_header import SafetensorsHeader, TensorInfo, parse_header_file
from registry.adapters.weight_names import WeightIndex
from registry.compute import quantized
from registry.compute.device import select_device
from registry.compute.lora import IncompatibleAdapters, LoraAdapter, LoraModule, OtherModule

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
_VOCAB_MODULES = ("embed_tokens", "wte", "word_embeddings", "embed_in", "lm_head", "embed_out")
_CHUNK = 1 << 24


@dataclass(frozen=True)
class _Update:
    """What happens to one base tensor; ``kind``: lora, dora, lora_bias, ia3, ia3_bias, loha or replace."""

    kind: str
    module: str  # the adapter's module (or saved tensor) name
    lora: LoraModule | None = None
    other: OtherModule | None = None
    tensor: torch.Tensor | None = None  # the replacement of a modules_to_save tensor


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
    if quantized.is_quantized(base_dir):  # dequantize, merge into that, requantize (bitsandbytes)
        return quantized.merge_into_quantized(
            adapter, base_dir, out_dir, lambda a, b, o: merge_into_base(a, b, o, device=dev)
        )
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
    if adapter.peft_type not in ("LORA", "IA3", "LOHA"):
        raise IncompatibleAdapters(
            f"merge-base merges LoRA, IA3 and LoHa adapters, not {adapter.peft_type}; merge it with PEFT's "
            "merge_and_unload instead."
        )
    if not adapter.modules and not adapter.other and not adapter.saved:
        raise IncompatibleAdapters("the adapter has no modules; there is nothing to merge.")


def _plan(adapter: LoraAdapter, weights: SafetensorsWeights) -> dict[str, _Update]:
    """base tensor name -> its update, after checking every module; raises listing all problems."""
    index = WeightIndex({name: weights.info(name) for name in weights.locations})
    plan: dict[str, _Update] = {}
    problems: list[str] = []
    keys = {}
    for name in sorted({*adapter.modules, *adapter.other}):
        key = _resolve(name, index, problems)
        if key is not None:
            keys[name] = key
    modules = _oriented(adapter, {n: weights.info(k).shape for n, k in keys.items()})
    for name, key in sorted(keys.items()):
        info = weights.info(key)
        if info.dtype not in TORCH_DTYPES:
            problems.append(
                f"base weight {key!r} has dtype {info.dtype}; only F16/BF16/F32/F64 can be merged"
            )
            continue
        update = _module_update(name, modules.get(name), adapter.other.get(name), key, info, problems)
        if update is None:
            continue
        _add(plan, key, update, problems)
        bias = _bias_update(name, modules.get(name), adapter.other.get(name), key, weights, problems)
        if bias is not None:
            _add(plan, key.removesuffix(".weight") + ".bias", bias, problems)
    for name, tensor in sorted(adapter.saved.items()):
        module, _, param = name.rpartition(".")
        key = _resolve(module, index, problems, what="module in modules_to_save")
        if key is None:
            continue
        target = key if param == "weight" else key.removesuffix(".weight") + f".{param}"
        if target not in weights.locations:
            problems.append(f"saved tensor {name!r} has no base tensor {target!r} to replace")
            continue
        base = weights.info(target)
        if base.dtype not in TORCH_DTYPES:
            problems.append(
                f"base tensor {target!r} has dtype {base.dtype}; only F16/BF16/F32/F64 can be merged"
            )
        elif tuple(tensor.shape[1:]) != tuple(base.shape[1:]) or tensor.ndim != len(base.shape):
            problems.append(
                f"saved tensor {name!r} {tuple(tensor.shape)} cannot replace base tensor {target!r} "
                f"{tuple(base.shape)}: only the rows may differ (a resized vocabulary)"
            )
        else:
            _add(plan, target, _Update("replace", name, tensor=tensor), problems)
    if problems:
        listed = "\n".join(f"- {p}" for p in problems[:20])
        more = f"\n- ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise IncompatibleAdapters(
            f"the adapter does not fit the base model in {weights.directory} "
            f"({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n{listed}{more}"
        )
    return plan


def _resolve(
    name: str, index: WeightIndex[TensorInfo], problems: list[str], *, what: str = "module"
) -> str | None:
    key, candidates = index.resolve(name)
    if key is None:
        if candidates:
            problems.append(f"{what} {name!r} matches several base weights ({', '.join(candidates[:5])})")
        else:
            near = index.near(name)
            hint = f"; the base has e.g. {', '.join(repr(k) for k in near)}" if near else ""
            problems.append(
                f"{what} {name!r} has no weight in the base ({name + '.weight'!r} or a prefix variant{hint})"
            )
    return key


def _oriented(adapter: LoraAdapter, shapes: dict[str, tuple[int, ...]]) -> dict[str, LoraModule]:
    """The LoRA modules with ``transposed_in_base`` decided per module, as PEFT does by layer type: a Linear
    weight is (out, in), GPT-2's Conv1D (in, out) whatever ``fan_in_fan_out`` says. A square weight follows
    its namesakes in other layers, else all the other modules, else the config."""
    fits: dict[str, set[bool]] = {}
    for name, module in adapter.modules.items():
        if module.kind == "linear" and name in shapes and len(shapes[name]) == 2:
            fits[name] = {
                t for t in (False, True) if tuple(shapes[name]) == (module.shape[::-1] if t else module.shape)
            }
    decided = {name: next(iter(f)) for name, f in fits.items() if len(f) == 1}
    by_last: dict[str, set[bool]] = defaultdict(set)
    for name, flag in decided.items():
        by_last[name.rpartition(".")[2]].add(flag)
    everyone = set(decided.values())
    result = {}
    for name, module in adapter.modules.items():
        flag = decided.get(name, module.transposed_in_base)
        if len(fits.get(name, ())) == 2:
            siblings = by_last.get(name.rpartition(".")[2], set())
            flag = (
                next(iter(siblings))
                if len(siblings) == 1
                else (next(iter(everyone)) if len(everyone) == 1 else module.transposed_in_base)
            )
        result[name] = (
            module
            if flag == module.transposed_in_base
            else dataclasses.replace(module, transposed_in_base=flag)
        )
    return result


def _module_update(
    name: str,
    module: LoraModule | None,
    other: OtherModule | None,
    key: str,
    info: TensorInfo,
    problems: list[str],
) -> _Update | None:
    shape = tuple(info.shape)
    if module is not None:
        expected = module.shape[::-1] if module.transposed_in_base else module.shape
        if shape != tuple(expected):
            layout = "(in, out)" if module.transposed_in_base else "(out, in)"
            problems.append(
                f"module {name!r} (A {tuple(module.A.shape)}, B {tuple(module.B.shape)}) needs base weight "
                f"{key!r} stored {layout} = {tuple(expected)}, but it is {shape}"
            )
            return None
        if module.magnitude is not None and tuple(module.magnitude.shape) != (module.shape[0],):
            problems.append(
                f"module {name!r}: its DoRA magnitude {tuple(module.magnitude.shape)} is not one value per "
                f"output feature ({module.shape[0]},)"
            )
            return None
        return _Update("dora" if module.magnitude is not None else "lora", name, lora=module)
    assert other is not None
    if other.kind == "loha":
        out_in = other.shape
        assert out_in is not None
        for transposed in (other.transposed_in_base, not other.transposed_in_base):
            if shape == (out_in[::-1] if transposed else out_in):
                return _Update("loha", name, other=dataclasses.replace(other, transposed_in_base=transposed))
        problems.append(f"LoHa module {name!r} updates a {out_in} (out, in) weight but {key!r} is {shape}")
        return None
    vector = tuple(other.tensors["ia3_l"].shape)
    for transposed in (other.transposed_in_base, not other.transposed_in_base):
        oriented = vector[::-1] if transposed else vector
        if len(shape) == 2 and all(v in (1, s) for v, s in zip(oriented, shape, strict=True)):
            return _Update("ia3", name, other=dataclasses.replace(other, transposed_in_base=transposed))
    problems.append(f"IA3 module {name!r}: ia3_l {vector} does not scale base weight {key!r} {shape}")
    return None


def _bias_update(
    name: str,
    module: LoraModule | None,
    other: OtherModule | None,
    key: str,
    weights: SafetensorsWeights,
    problems: list[str],
) -> _Update | None:
    bias_key = key.removesuffix(".weight") + ".bias"
    has_bias = key.endswith(".weight") and bias_key in weights.locations
    if module is not None and module.bias is not None:
        if not has_bias:
            problems.append(
                f"module {name!r} has a lora_B.bias but base layer {key.removesuffix('.weight')!r} has no "
                "bias; PEFT cannot merge lora_bias into it either"
            )
            return None
        if tuple(weights.info(bias_key).shape) != (module.shape[0],):
            problems.append(
                f"base bias {bias_key!r} {weights.info(bias_key).shape} is not ({module.shape[0]},)"
            )
            return None
        return _Update("lora_bias", name, lora=module)
    if other is not None and other.kind == "ia3" and not other.feedforward and has_bias:
        return _Update("ia3_bias", name, other=other)
    return None


def _add(plan: dict[str, _Update], key: str, update: _Update, problems: list[str]) -> None:
    if key in plan:
        problems.append(f"{plan[key].module!r} and {update.module!r} both change base tensor {key!r}")
    else:
        plan[key] = update


def _write(
    adapter: LoraAdapter,
    weights: SafetensorsWeights,
    plan: dict[str, _Update],
    out: Path,
    device: torch.device,
) -> dict[str, Any]:
    merged, peak = [], 0
    new_shapes: dict[str, tuple[int, ...]] = {}
    for shard, header in sorted(weights.headers.items()):
        targeted = sorted((info for key, info in header.tensors.items() if key in plan), key=_begin)
        reshaped = {
            info.name: tuple(plan[info.name].tensor.shape)  # type: ignore[union-attr]
            for info in targeted
            if plan[info.name].kind == "replace" and tuple(plan[info.name].tensor.shape) != info.shape  # type: ignore[union-attr]
        }
        if reshaped:
            _rewrite_shard(weights, shard, header, plan, out / shard, device)
            new_shapes.update(reshaped)
        else:
            shutil.copyfile(weights.directory / shard, out / shard)
            with (out / shard).open("r+b") as handle:
                for info in targeted:
                    buffer = bytearray(info.end - info.begin)
                    handle.seek(header.data_start + info.begin)
                    handle.readinto(buffer)
                    weight = torch.frombuffer(buffer, dtype=TORCH_DTYPES[info.dtype]).view(info.shape)
                    _apply(plan[info.name], weight, device)
                    handle.seek(header.data_start + info.begin)
                    handle.write(buffer)
                    peak = max(peak, len(buffer))
        for info in targeted:
            update = plan[info.name]
            merged.append(
                {"module": update.module, "tensor": info.name, "shard": shard, "update": update.kind}
            )
    new_headers = (
        {shard: parse_header_file(out / shard) for shard in weights.headers}
        if new_shapes
        else weights.headers
    )
    if weights.index is not None:
        total = sum(info.end - info.begin for h in new_headers.values() for info in h.tensors.values())
        metadata = {**(weights.index.get("metadata") or {}), "total_size": total}
        index = {"metadata": metadata, "weight_map": dict(sorted(weights.locations.items()))}
        (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    copied, skipped = _copy_other_files(weights, out, _config_changes(new_shapes))
    kinds = [m["update"] for m in merged]
    return {
        "modules_merged": sum(k in ("lora", "dora", "ia3", "loha") for k in kinds),
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
        "peft_type": adapter.peft_type,
        "dora_modules": kinds.count("dora"),
        "biases_merged": kinds.count("lora_bias") + kinds.count("ia3_bias"),
        "tensors_replaced": sorted(m["tensor"] for m in merged if m["update"] == "replace"),
        "resized": {name: list(shape) for name, shape in sorted(new_shapes.items())},
    }


def _rewrite_shard(
    weights: SafetensorsWeights,
    shard: str,
    header: SafetensorsHeader,
    plan: dict[str, _Update],
    path: Path,
    device: torch.device,
) -> None:
    """Write ``shard`` anew, tensor by tensor in its order, with a header for the replaced tensors' shapes."""
    order = sorted(header.tensors.values(), key=_begin)
    entries: dict[str, Any] = {"__metadata__": header.metadata} if header.metadata else {}
    offset = 0
    sizes = {}
    for info in order:
        update = plan.get(info.name)
        shape = tuple(update.tensor.shape) if update is not None and update.kind == "replace" else info.shape  # type: ignore[union-attr]
        size = (info.end - info.begin) if shape == info.shape else _nbytes(info.dtype, shape)
        entries[info.name] = {
            "dtype": info.dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        sizes[info.name] = size
        offset += size
    raw = json.dumps(entries, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with (weights.directory / shard).open("rb") as source, path.open("wb") as target:
        target.write(struct.pack("<Q", len(raw)) + raw)
        for info in order:
            update = plan.get(info.name)
            if update is None:
                source.seek(header.data_start + info.begin)
                left = info.end - info.begin
                while left:
                    chunk = source.read(min(left, _CHUNK))
                    target.write(chunk)
                    left -= len(chunk)
                continue
            if update.kind == "replace":
                assert update.tensor is not None
                data = update.tensor.to("cpu", TORCH_DTYPES[info.dtype]).contiguous()
                target.write(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
                continue
            weight = _read_tensor(source, header.data_start, info)
            _apply(update, weight, device)
            target.write(weight.contiguous().view(torch.uint8).numpy().tobytes())


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count * TORCH_DTYPES[dtype].itemsize


def _config_changes(new_shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """config.json fields that follow a resized embedding or head: ``vocab_size``."""
    rows = {
        shape[0]
        for name, shape in new_shapes.items()
        if name.removesuffix(".weight").endswith(_VOCAB_MODULES)
    }
    if len(rows) == 1:
        return {"vocab_size": rows.pop()}
    return {}


def _apply(update: _Update, weight: torch.Tensor, device: torch.device) -> None:
    """Apply one planned update to ``weight`` (a CPU tensor over the shard's bytes) in place."""
    if update.kind == "lora":
        assert update.lora is not None
        _add_delta(weight, update.lora, device)
        return
    if update.kind == "replace":
        assert update.tensor is not None
        weight.copy_(update.tensor.to(weight.dtype))
        return
    work = weight.to(device, torch.float32, copy=True)
    if update.kind == "dora":
        module = update.lora
        assert module is not None and module.magnitude is not None
        merged = work + module.base_orientation_delta(torch.float32).to(device)
        dim = 0 if module.transposed_in_base else 1
        norm = torch.linalg.norm(merged, dim=dim, keepdim=True)
        magnitude = module.magnitude.to(device, torch.float32)
        magnitude = magnitude.view(1, -1) if module.transposed_in_base else magnitude.view(-1, 1)
        work = merged * (magnitude / norm)
    elif update.kind == "lora_bias":
        assert update.lora is not None and update.lora.bias is not None
        work = work + update.lora.bias.to(device, torch.float32) * update.lora.scale
    elif update.kind in ("ia3", "ia3_bias"):
        assert update.other is not None
        vector = update.other.tensors["ia3_l"].to(device, torch.float32)
        if update.kind == "ia3_bias":
            vector = vector.reshape(work.shape)
        elif update.other.transposed_in_base:
            vector = vector.T
        work = work * vector
    elif update.kind == "loha":
        assert update.other is not None
        delta = update.other.delta(torch.float32).to(device)
        work = work + (delta.T if update.other.transposed_in_base else delta)
    else:
        raise AssertionError(update.kind)
    weight.copy_(work.to(weight.dtype))


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


def _copy_other_files(
    weights: SafetensorsWeights, out: Path, config_changes: dict[str, Any] | None = None
) -> tuple[list[str], list[str]]:
    copied, skipped = [], []
    for path in sorted(weights.directory.iterdir()):
        if path.name in weights.headers or path.name == INDEX_FILE:
            continue
        if not path.is_file() or path.name.endswith(_WEIGHT_SUFFIXES):
            skipped.append(path.name)
            continue
        if path.name == "config.json" and config_changes:
            config = json.loads(path.read_text())
            if isinstance(config, dict):
                config.update({k: v for k, v in config_changes.items() if k in config})
            (out / path.name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        else:
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
