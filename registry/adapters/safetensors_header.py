"""Parse and validate a safetensors header without reading any tensor data.

A safetensors file is an 8-byte little-endian header length ``n``, ``n`` bytes of UTF-8 JSON, then the
data region. The checks mirror the safetensors library's ``read_metadata``/``Metadata::validate``: the
tensors, sorted by offsets, must tile the data region exactly (no overlap, no hole, no trailing bytes),
and each tensor's byte span must equal ``prod(shape) * dtype size``. On top of that, this parser refuses
what the library would silently accept or choke on (duplicate JSON keys, NaN literals, lone surrogates,
absurd ranks), since the bytes come from untrusted uploads.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import InvalidSafetensors

FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})

#: Bits per element of every dtype the safetensors format defines (the source of truth for sizes).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
#: Bytes per element for the whole-byte dtypes (the sub-byte F4/F6 types are only in ``DTYPE_BITS``).
DTYPE_ITEMSIZE: dict[str, int] = {dtype: bits // 8 for dtype, bits in DTYPE_BITS.items() if bits % 8 == 0}

MAX_HEADER_SIZE = 100 * 1024 * 1024
MAX_TENSORS = 1_000_000
MAX_NDIM = 64
_U64_LIMIT = 1 << 64  # the library computes sizes in u64 (usize); anything at or above overflows there

ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's entry; ``begin``/``end`` are byte offsets relative to the start of the data region."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """The validated header of a safetensors file."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int  # 8 + header length
    file_size: int


def parse_header(
    read_at: ReadAt, file_size: int, *, filename: str = "adapter_model.safetensors"
) -> SafetensorsHeader:
    """Read and validate the header of a ``file_size``-byte safetensors file through ``read_at(offset, n)``.

    Only the length prefix and the JSON header are read. Raises ``InvalidSafetensors`` on any defect.
    """
    if file_size < 8:
        raise InvalidSafetensors(
            f"{filename} is {file_size} bytes long, shorter than the 8-byte header length every safetensors "
            "file starts with; upload the complete file."
        )
    prefix = _read_exactly(read_at, 0, 8, filename)
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len == 0:
        raise InvalidSafetensors(
            f"{filename} declares a header length of 0; a safetensors header is a non-empty JSON object. "
            "The file is not safetensors or is corrupt."
        )
    if header_len > MAX_HEADER_SIZE:
        raise InvalidSafetensors(
            f"{filename} declares a header of {header_len} bytes, above the {MAX_HEADER_SIZE}-byte limit; "
            "the file is not safetensors or is corrupt."
        )
    data_start = 8 + header_len
    if data_start > file_size:
        raise InvalidSafetensors(
            f"{filename} declares a header of {header_len} bytes but the file is only {file_size} bytes; "
            "the file is truncated or not safetensors. Upload the complete file."
        )
    raw = _read_exactly(read_at, 8, header_len, filename)
    entries = _decode_json(raw, filename)
    metadata = _parse_metadata(entries.pop("__metadata__", None), filename)
    if len(entries) > MAX_TENSORS:
        raise InvalidSafetensors(
            f"{filename} lists {len(entries)} tensors, above the limit of {MAX_TENSORS}; split the file."
        )
    tensors = {name: _parse_tensor(name, entry, filename) for name, entry in entries.items()}
    _check_layout(tensors, file_size - data_start, filename)
    return SafetensorsHeader(tensors=tensors, metadata=metadata, data_start=data_start, file_size=file_size)


def parse_header_file(path: Path) -> SafetensorsHeader:
    """``parse_header`` for a local file."""
    path = Path(path)
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size

        def read_at(offset: int, length: int) -> bytes:
            handle.seek(offset)
            return handle.read(length)

        return parse_header(read_at, size, filename=path.name)


def _read_exactly(read_at: ReadAt, offset: int, length: int, filename: str) -> bytes:
    data = read_at(offset, length)
    if len(data) < length:
        raise InvalidSafetensors(
            f"{filename} is truncated: reading {length} bytes at offset {offset} returned only {len(data)}. "
            "Upload the complete file."
        )
    return bytes(data[:length])


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {_show(key)}")
        result[key] = value
    return result


def _reject_constant(token: str) -> None:
    raise ValueError(f"{token} is not valid JSON")


def _decode_json(raw: bytes, filename: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSafetensors(
            f"{filename}: the header is not valid UTF-8 (byte {exc.start}); the file is not safetensors "
            "or is corrupt."
        ) from None
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidSafetensors(f"{filename}: the header JSON is nested too deeply.") from None
    except ValueError as exc:
        raise InvalidSafetensors(
            f"{filename}: the header is not valid JSON ({exc}); the file is not safetensors or is corrupt."
        ) from None
    if not isinstance(value, dict):
        raise InvalidSafetensors(
            f"{filename}: the header must be a JSON object mapping tensor names to entries, "
            f"got a JSON {_json_type(value)}."
        )
    return value


def _parse_metadata(value: Any, filename: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidSafetensors(
            f"{filename}: __metadata__ must be an object of string values, got a JSON {_json_type(value)}."
        )
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidSafetensors(
                f"{filename}: __metadata__[{_show(key)}] must be a string, got a JSON {_json_type(item)}."
            )
        _check_text(key, "a __metadata__ key", filename)
        _check_text(item, f"__metadata__[{_show(key)}]", filename)
    return dict(value)


def _parse_tensor(name: str, entry: Any, filename: str) -> TensorInfo:
    _check_text(name, "a tensor name", filename)
    where = f"{filename}: tensor {_show(name)}"
    if not isinstance(entry, dict):
        raise InvalidSafetensors(
            f"{where}: the entry must be an object with dtype, shape and data_offsets, "
            f"got a JSON {_json_type(entry)}."
        )
    missing = [field for field in ("dtype", "shape", "data_offsets") if field not in entry]
    if missing:
        raise InvalidSafetensors(f"{where}: the entry lacks {', '.join(missing)}.")
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise InvalidSafetensors(
            f"{where}: unknown dtype {_show(dtype)}; safetensors dtypes are {', '.join(DTYPE_BITS)}."
        )
    shape = _parse_shape(entry["shape"], where)
    begin, end = _parse_offsets(entry["data_offsets"], where)
    nbits = DTYPE_BITS[dtype]
    for dim in shape:
        nbits *= dim
        if nbits >= _U64_LIMIT:
            raise InvalidSafetensors(f"{where}: shape {list(shape)} of {dtype} overflows 64-bit sizes.")
    if nbits % 8:
        raise InvalidSafetensors(
            f"{where}: shape {list(shape)} of {dtype} is {nbits} bits, not a whole number of bytes."
        )
    if end - begin != nbits // 8:
        raise InvalidSafetensors(
            f"{where}: data_offsets [{begin}, {end}] span {end - begin} bytes but shape {list(shape)} of "
            f"{dtype} needs {nbits // 8}; the header is inconsistent."
        )
    return TensorInfo(name=name, dtype=dtype, shape=shape, begin=begin, end=end)


def _parse_shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InvalidSafetensors(
            f"{where}: shape must be a list of integers, got a JSON {_json_type(value)}."
        )
    if len(value) > MAX_NDIM:
        raise InvalidSafetensors(
            f"{where}: shape has {len(value)} dimensions, above the limit of {MAX_NDIM}."
        )
    for dim in value:
        if not _is_int(dim) or dim < 0:
            raise InvalidSafetensors(
                f"{where}: shape {_show(value)} must hold non-negative integers, has {_show(dim)}."
            )
        if dim >= _U64_LIMIT:
            raise InvalidSafetensors(f"{where}: shape dimension {dim} overflows 64-bit sizes.")
    return tuple(value)


def _parse_offsets(value: Any, where: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)):
        raise InvalidSafetensors(f"{where}: data_offsets must be [begin, end] integers, got {_show(value)}.")
    begin, end = value
    if not 0 <= begin <= end < _U64_LIMIT:
        raise InvalidSafetensors(
            f"{where}: data_offsets [{begin}, {end}] must satisfy 0 <= begin <= end (and fit in 64 bits)."
        )
    return begin, end


def _check_layout(tensors: dict[str, TensorInfo], data_size: int, filename: str) -> None:
    """The tensors, sorted by offsets, must cover ``[0, data_size)`` exactly once."""
    position = 0
    previous: TensorInfo | None = None
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if info.end > data_size:
            raise InvalidSafetensors(
                f"{filename}: tensor {_show(info.name)} data_offsets [{info.begin}, {info.end}] run past the "
                f"end of the data region ({data_size} bytes after the header); the file is truncated."
            )
        if previous is not None and info.begin < position:
            raise InvalidSafetensors(
                f"{filename}: tensors {_show(previous.name)} [{previous.begin}, {previous.end}] and "
                f"{_show(info.name)} [{info.begin}, {info.end}] overlap; each byte of the data region must "
                "belong to one tensor."
            )
        if info.begin > position:
            after = f"after tensor {_show(previous.name)}" if previous else "at the start of the data region"
            raise InvalidSafetensors(
                f"{filename}: data bytes [{position}, {info.begin}) {after} belong to no tensor (a hole "
                f"before {_show(info.name)}); safetensors requires the tensors to tile the data region."
            )
        position = info.end
        previous = info
    if position != data_size:
        raise InvalidSafetensors(
            f"{filename}: the data region is {data_size} bytes but the tensors end at byte {position}: "
            f"{data_size - position} trailing bytes belong to no tensor."
        )


def _check_text(text: str, what: str, filename: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSafetensors(
            f"{filename}: {what} ({_show(text)}) contains a lone surrogate escape and is not valid Unicode."
        ) from None


def _show(value: Any, limit: int = 200) -> str:
    """``repr`` cut to ``limit`` characters, so hostile names cannot blow up error messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
