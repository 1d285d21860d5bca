"""The bad pushes every interface must refuse (design §4, issue 2): each builds an adapter directory
from a good one and says what the refusal must look like. Used by the API and the CLI tests alike."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
Q_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
Q_B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


@dataclass
class BadPush:
    name: str
    mutate: Callable[[Path], None]  # edits a copy of a good adapter directory in place
    status: int
    code: str
    says: str  # a fragment the error message must contain
    push: dict[str, Any] = field(default_factory=dict)  # extra commit fields


def _bytes(path: Path, edit: Callable[[bytes], bytes]) -> None:
    path.write_bytes(edit(path.read_bytes()))


def _header(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


def _tensors(path: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def _config(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _overlap(header: dict[str, Any]) -> None:
    """Point the second tensor at the first one's bytes (same size, so only the overlap is wrong)."""
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    first, second = header[names[0]]["data_offsets"], header[names[1]]["data_offsets"]
    length = second[1] - second[0]
    header[names[1]]["data_offsets"] = [first[0], first[0] + length]


def _past_end(header: dict[str, Any]) -> None:
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    begin, end = header[last]["data_offsets"]
    header[last]["data_offsets"] = [begin + 4096, end + 4096]


def _rank_disagrees(t: dict[str, torch.Tensor]) -> None:
    t[Q_B] = t[Q_B][:, :4].contiguous()


def _wrong_shape(t: dict[str, torch.Tensor]) -> None:
    t[Q_A] = torch.zeros(t[Q_A].shape[0], t[Q_A].shape[1] + 3)


def _unknown_module(t: dict[str, torch.Tensor]) -> None:
    t[Q_A.replace("q_proj", "qkv_proj")] = t.pop(Q_A)
    t[Q_B.replace("q_proj", "qkv_proj")] = t.pop(Q_B)


def _bool_dtype(t: dict[str, torch.Tensor]) -> None:
    t[Q_A] = t[Q_A] > 0


BAD_PUSHES = [
    BadPush(
        "truncated safetensors",
        lambda p: _bytes(p / WEIGHTS, lambda b: b[: len(b) - 100]),
        422,
        "invalid_safetensors",
        "trunc",
    ),
    BadPush(
        "header length past end",
        lambda p: _bytes(p / WEIGHTS, lambda b: struct.pack("<Q", 10**7) + b[8:]),
        422,
        "invalid_safetensors",
        "header",
    ),
    BadPush(
        "header not JSON",
        lambda p: _bytes(p / WEIGHTS, lambda b: b[:8] + b"\x00not json" + b[17:]),
        422,
        "invalid_safetensors",
        "JSON",
    ),
    BadPush(
        "overlapping offsets", lambda p: _header(p / WEIGHTS, _overlap), 422, "invalid_safetensors", "overlap"
    ),
    BadPush(
        "offsets out of bounds", lambda p: _header(p / WEIGHTS, _past_end), 422, "invalid_safetensors", "end"
    ),
    BadPush("boolean dtype", lambda p: _tensors(p / WEIGHTS, _bool_dtype), 422, "invalid_adapter", "BOOL"),
    BadPush(
        "A/B ranks disagree",
        lambda p: _tensors(p / WEIGHTS, _rank_disagrees),
        422,
        "invalid_adapter",
        "q_proj",
    ),
    BadPush(
        "rank differs from config",
        lambda p: _config(p / CONFIG, lambda c: c.update(r=4)),
        422,
        "invalid_adapter",
        "rank",
    ),
    BadPush(
        "rank differs from rank_pattern",
        lambda p: _config(p / CONFIG, lambda c: c.update(rank_pattern={"q_proj": 4})),
        422,
        "invalid_adapter",
        "rank",
    ),
    BadPush(
        "shape does not fit base",
        lambda p: _tensors(p / WEIGHTS, _wrong_shape),
        422,
        "invalid_adapter",
        "q_proj",
    ),
    BadPush(
        "module missing from base",
        lambda p: _tensors(p / WEIGHTS, _unknown_module),
        422,
        "invalid_adapter",
        "qkv_proj",
    ),
    BadPush(
        "orphan lora_A",
        lambda p: _tensors(p / WEIGHTS, lambda t: t.pop(Q_B)),
        422,
        "invalid_adapter",
        "lora_B",
    ),
    BadPush("missing adapter_config.json", lambda p: (p / CONFIG).unlink(), 422, "invalid_adapter", CONFIG),
    BadPush(
        "unknown base SHA",
        lambda p: None,
        404,
        "unknown_base",
        "lorareg base register",
        push={"base": "0123456789abcdef0123456789abcdef01234567"},
    ),
]


def prepare(case: BadPush, good: Path, workdir: Path) -> Path:
    """A copy of the good adapter with the case's damage done."""
    target = workdir / case.name.replace(" ", "-").replace("/", "-")
    shutil.copytree(good, target)
    case.mutate(target)
    return target
