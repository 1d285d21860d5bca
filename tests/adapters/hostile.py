"""Build safetensors bytes by hand, valid or hostile, independently of the parser under test."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from registry.adapters.safetensors_header import SafetensorsHeader, parse_header

# Bits per element, written out here rather than imported so the tests do not trust the parser's table.
BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F4": 4,
    "F16": 16,
    "BF16": 16,
    "F32": 32,
    "I32": 32,
    "I16": 16,
    "U16": 16,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "C64": 64,
    "U64": 64,
    "F64": 64,
    "I64": 64,
}

Spec = Mapping[str, tuple[str, Sequence[int]]]


def entry(dtype: str, shape: Sequence[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


def header_bytes(header: Any, *, declared_len: int | None = None) -> bytes:
    """Length prefix + header; ``header`` may be raw bytes/str or a JSON value. Padded to 8 bytes like
    the library does, unless ``declared_len`` overrides the length prefix."""
    if isinstance(header, bytes):
        raw = header
    elif isinstance(header, str):
        raw = header.encode("utf-8")
    else:
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
    length = len(raw) if declared_len is None else declared_len
    return struct.pack("<Q", length) + raw


def file_bytes(header: Any, data: bytes = b"", *, declared_len: int | None = None) -> bytes:
    return header_bytes(header, declared_len=declared_len) + data


def layout(tensors: Spec, metadata: Mapping[str, str] | None = None) -> bytes:
    """A valid file (zero data) holding these ``name: (dtype, shape)`` tensors, packed in order."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata is not None else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * BITS[dtype] // 8
        header[name] = entry(dtype, shape, offset, offset + size)
        offset += size
    return file_bytes(header, b"\0" * offset)


def reader(blob: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, length: blob[offset : offset + length]


def parse(blob: bytes, filename: str = "adapter_model.safetensors") -> SafetensorsHeader:
    return parse_header(reader(blob), len(blob), filename=filename)


def spec_of(header: SafetensorsHeader) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (info.dtype, info.shape) for name, info in header.tensors.items()}


def rebuilt(
    header: SafetensorsHeader,
    *,
    drop: Sequence[str] = (),
    change: Spec | None = None,
    add: Spec | None = None,
) -> SafetensorsHeader:
    """``header`` with tensors dropped, changed (dtype, shape) or added, as a freshly parsed valid file."""
    spec = spec_of(header)
    for name in drop:
        del spec[name]
    for name, value in (change or {}).items():
        assert name in spec, name
        spec[name] = (value[0], tuple(value[1]))
    for name, value in (add or {}).items():
        assert name not in spec, name
        spec[name] = (value[0], tuple(value[1]))
    return parse(layout(spec))
