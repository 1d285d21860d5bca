"""parse_header on real files and on hand-crafted hostile bytes, cross-checked with the safetensors lib."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

from registry.adapters import safetensors_header as sh
from registry.adapters.safetensors_header import (
    DTYPE_BITS,
    DTYPE_ITEMSIZE,
    FLOAT_DTYPES,
    MAX_HEADER_SIZE,
    parse_header,
    parse_header_file,
)
from registry.errors import InvalidSafetensors

from .hostile import entry, file_bytes, header_bytes, layout, parse, reader


def test_real_file_matches_the_library_and_offsets_point_at_the_bytes(tmp_path: Path) -> None:
    tensors = {
        "a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "b.bf16": torch.arange(6, dtype=torch.bfloat16),
        "c.int": torch.tensor([[1, 2], [3, 4]], dtype=torch.int64),
        "d.bool": torch.tensor([True, False, True]),
        "e.empty": torch.zeros(0, 5, dtype=torch.float16),
        "f.scalar": torch.tensor(2.5, dtype=torch.float64),
    }
    path = tmp_path / "x.safetensors"
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    blob = path.read_bytes()

    header = parse_header_file(path)

    assert header.metadata == {"format": "pt"}
    assert header.file_size == len(blob)
    assert header.data_start == 8 + struct.unpack("<Q", blob[:8])[0]
    expected_dtypes = {"a.weight": "F32", "b.bf16": "BF16", "c.int": "I64", "d.bool": "BOOL"}
    for name, tensor in tensors.items():
        info = header.tensors[name]
        assert info.name == name
        assert info.shape == tuple(tensor.shape)
        if name in expected_dtypes:
            assert info.dtype == expected_dtypes[name]
        stored = blob[header.data_start + info.begin : header.data_start + info.end]
        raw = tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor
        assert stored == raw.numpy().tobytes()


def test_reads_only_the_prefix_and_the_header(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(256, 256)}, path)
    blob = path.read_bytes()
    reads: list[tuple[int, int]] = []

    def read_at(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return blob[offset : offset + length]

    header = parse_header(read_at, len(blob))
    assert reads == [(0, 8), (8, header.data_start - 8)]
    assert max(offset + length for offset, length in reads) == header.data_start < len(blob)


def test_tables() -> None:
    assert {"F16", "BF16", "F32", "F64"} == FLOAT_DTYPES
    assert DTYPE_ITEMSIZE["BF16"] == 2 and DTYPE_ITEMSIZE["F8_E4M3"] == 1 and DTYPE_ITEMSIZE["U64"] == 8
    assert DTYPE_BITS["F4"] == 4 and "F4" not in DTYPE_ITEMSIZE
    assert MAX_HEADER_SIZE == 100 * 1024 * 1024


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(file_bytes({}), id="no-tensors"),
        pytest.param(layout({"z": ("F32", (0, 3)), "a": ("F32", (2,))}), id="zero-size-tensor"),
        pytest.param(layout({"packed": ("F4", (2, 3))}), id="sub-byte-dtype"),
        pytest.param(
            header_bytes('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}') + b"xy", id="unpadded"
        ),
        pytest.param(
            file_bytes({"b": entry("U8", [1], 2, 3), "a": entry("U8", [2], 0, 2)}, b"abc"),
            id="offsets-out-of-order",
        ),
        pytest.param(
            file_bytes({"__metadata__": None, "a": entry("U8", [1], 0, 1)}, b"x"), id="null-metadata"
        ),
    ],
)
def test_valid_layouts_are_accepted_like_the_library(blob: bytes) -> None:
    header = parse(blob)
    library = dict(safetensors.deserialize(blob))
    assert set(header.tensors) == set(library)
    for name, tensor in library.items():
        assert header.tensors[name].shape == tuple(tensor["shape"])
        assert header.tensors[name].dtype == tensor["dtype"]


def _too_deep() -> bytes:
    return header_bytes('{"a":' + "[" * 100_000 + "]" * 100_000 + "}")


# (id, bytes, expected message fragment, does the safetensors library reject it too?)
HOSTILE = [
    ("empty-file", b"", "shorter than the 8-byte", True),
    ("five-bytes", b"\x05\0\0\0\0", "shorter than the 8-byte", True),
    ("zero-header-length", struct.pack("<Q", 0) + b"{}", "header length of 0", True),
    ("header-over-limit", struct.pack("<Q", MAX_HEADER_SIZE + 1) + b"{}", "above the", True),
    ("header-past-eof", header_bytes(b"{}", declared_len=64), "file is only", True),
    ("huge-u64-length", struct.pack("<Q", 2**64 - 1) + b"{}", "above the", True),
    ("not-utf8", header_bytes(b'{"\xff":1}'), "not valid UTF-8", True),
    ("not-json", header_bytes(b"{not json}   "), "not valid JSON", True),
    ("json-array", header_bytes(b"[]      "), "got a JSON array", True),
    ("json-string", header_bytes(b'"abc"   '), "got a JSON string", True),
    ("metadata-not-object", file_bytes({"__metadata__": [1]}), "__metadata__ must be an object", True),
    (
        "metadata-value-int",
        file_bytes({"__metadata__": {"k": 1}}),
        "__metadata__['k'] must be a string",
        True,
    ),
    ("entry-not-object", file_bytes({"a": [1, 2]}), "must be an object with dtype", True),
    (
        "entry-missing-shape",
        file_bytes({"a": {"dtype": "F32", "data_offsets": [0, 4]}}, b"1234"),
        "lacks shape",
        True,
    ),
    ("unknown-dtype", file_bytes({"a": entry("F12", [1], 0, 4)}, b"1234"), "unknown dtype 'F12'", True),
    (
        "shape-not-list",
        file_bytes({"a": {"dtype": "U8", "shape": 4, "data_offsets": [0, 4]}}, b"1234"),
        "shape must be a list",
        True,
    ),
    ("negative-dim", file_bytes({"a": entry("U8", [-1], 0, 0)}), "non-negative integers", True),
    ("float-dim", file_bytes({"a": entry("U8", [2.0], 0, 2)}, b"ab"), "non-negative integers", True),
    ("bool-dim", file_bytes({"a": entry("U8", [True], 0, 1)}, b"a"), "non-negative integers", True),
    (
        "offsets-three",
        file_bytes({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}}, b"a"),
        "data_offsets must be [begin, end]",
        True,
    ),
    ("begin-after-end", file_bytes({"a": entry("U8", [0], 4, 2)}, b"abcd"), "0 <= begin <= end", True),
    ("negative-begin", file_bytes({"a": entry("U8", [1], -1, 0)}), "0 <= begin <= end", True),
    ("size-mismatch", file_bytes({"a": entry("F32", [2, 2], 0, 12)}, b"x" * 12), "needs 16", True),
    ("shape-overflow", file_bytes({"a": entry("F32", [2**40, 2**40], 0, 0)}), "overflows 64-bit", True),
    ("dim-overflow", file_bytes({"a": entry("U8", [2**64], 0, 0)}), "overflows 64-bit", True),
    ("too-many-dims", file_bytes({"a": entry("U8", [1] * 65, 0, 1)}, b"a"), "above the limit of 64", False),
    ("misaligned-f4", file_bytes({"a": entry("F4", [3], 0, 2)}, b"ab"), "not a whole number of bytes", True),
    (
        "overlap",
        file_bytes({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 2, 6)}, b"x" * 6),
        "overlap",
        True,
    ),
    (
        "overlap-zero-size-inside",
        file_bytes({"a": entry("U8", [4], 0, 4), "z": entry("U8", [0], 2, 2)}, b"x" * 4),
        "overlap",
        True,
    ),
    (
        "hole-between",
        file_bytes({"a": entry("U8", [2], 0, 2), "b": entry("U8", [2], 4, 6)}, b"x" * 6),
        "belong to no tensor",
        True,
    ),
    (
        "hole-at-start",
        file_bytes({"a": entry("U8", [2], 2, 4)}, b"x" * 4),
        "at the start of the data region",
        True,
    ),
    ("past-end-truncated", file_bytes({"a": entry("U8", [8], 0, 8)}, b"x" * 5), "run past the end", True),
    ("trailing-bytes", file_bytes({"a": entry("U8", [2], 0, 2)}, b"x" * 5), "3 trailing bytes", True),
    ("data-but-no-tensors", file_bytes({}, b"junk"), "4 trailing bytes", True),
    (
        "duplicate-key",
        header_bytes(
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8",'
            b'"shape":[1],"data_offsets":[0,1]}}'
        )
        + b"x",
        "duplicate key 'a'",
        False,
    ),
    ("nan-literal", header_bytes(b'{"__metadata__":{"k":"v"},"x":NaN}'), "NaN is not valid JSON", True),
    (
        "lone-surrogate-name",
        header_bytes(b'{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}') + b"x",
        "lone surrogate",
        True,
    ),
    ("too-deep", _too_deep(), "nested too deeply", True),
]


@pytest.mark.parametrize(
    ("blob", "fragment", "library_rejects"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_bytes_are_refused(blob: bytes, fragment: str, library_rejects: bool) -> None:
    with pytest.raises(InvalidSafetensors) as caught:
        parse(blob, filename="evil.safetensors")
    assert fragment in caught.value.message
    assert caught.value.message.startswith("evil.safetensors")
    assert caught.value.code == "invalid_safetensors"
    if library_rejects:
        with pytest.raises(safetensors.SafetensorError):
            safetensors.deserialize(blob)
    else:  # where this parser is stricter than the library, make sure that is still the case
        assert safetensors.deserialize(blob) is not None


def test_short_read_is_truncation() -> None:
    blob = layout({"a": ("F32", (4,))})
    clipped = blob[:20]  # the reader returns less than the declared file size
    with pytest.raises(InvalidSafetensors, match="truncated"):
        parse_header(reader(clipped), len(blob))


def test_too_many_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sh, "MAX_TENSORS", 2)
    blob = layout({"a": ("U8", (1,)), "b": ("U8", (1,)), "c": ("U8", (1,))})
    with pytest.raises(InvalidSafetensors, match="3 tensors, above the limit of 2"):
        parse(blob)


def test_error_messages_stay_short_for_huge_names() -> None:
    name = "n" * 100_000
    blob = file_bytes({name: entry("F32", [2], 0, 4)}, b"x" * 4)
    with pytest.raises(InvalidSafetensors) as caught:
        parse(blob)
    assert "needs 8" in caught.value.message
    assert len(caught.value.message) < 1000


def test_header_is_json_with_padding_and_metadata() -> None:
    blob = layout({"w": ("BF16", (2, 3))}, metadata={"format": "pt", "note": "ü"})
    header = parse(blob)
    assert header.metadata == {"format": "pt", "note": "ü"}
    assert header.tensors["w"].end - header.tensors["w"].begin == 12
    assert json.loads(blob[8 : header.data_start])["w"]["dtype"] == "BF16"
