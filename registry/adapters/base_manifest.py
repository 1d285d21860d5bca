"""Shape manifests of base models: every 2-D weight's name, shape and dtype, read from safetensors headers.

The manifest's ``content_digest`` is the sha256 of the canonical JSON of ``{weight filename: file sha256}``,
so it can equally be computed from Hugging Face LFS oids without downloading the weights.

A bitsandbytes-quantized base (:mod:`registry.adapters.bnb`) records each quantized weight at its logical
(dequantized) shape and dtype, with ``quantized`` naming how it is stored, and the manifest's
``quantization`` says which kinds it holds: adapters are checked against the shapes they were trained on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from registry.adapters.bnb import KINDS, TORCH_DTYPES, quantized_weights
from registry.adapters.safetensors_header import SafetensorsHeader, parse_header_file
from registry.errors import InvalidInput

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
MODEL_CONFIG = "config.json"
MAX_MODEL_CONFIG = 1024 * 1024
_CHUNK = 1024 * 1024
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class WeightShape:
    shape: tuple[int, ...]
    dtype: str
    quantized: str | None = None  # bnb-nf4, bnb-fp4, bnb-int8: stored so; shape and dtype are logical


@dataclass(frozen=True, slots=True)
class BaseManifest:
    """What the compatibility check needs to know about a base model, without its weights."""

    weights: dict[str, WeightShape]  # every 2-D tensor: name -> shape/dtype
    files: dict[str, str]  # weight filename -> sha256 hex
    content_digest: str

    @property
    def quantization(self) -> str | None:
        """How the base's quantized weights are stored (``+``-joined kinds if several), None if none is."""
        kinds = sorted({w.quantized for w in self.weights.values() if w.quantized is not None})
        return "+".join(kinds) or None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with sorted keys; ``from_json`` reads it back."""
        return {
            "weights": {name: _weight_json(w) for name, w in sorted(self.weights.items())},
            "files": dict(sorted(self.files.items())),
            "content_digest": self.content_digest,
            **({"quantization": self.quantization} if self.quantization else {}),
        }

    @classmethod
    def from_json(cls, d: Any) -> BaseManifest:
        """Rebuild a manifest from ``to_json`` output; ``InvalidInput`` if malformed or inconsistent."""
        if not isinstance(d, dict) or not {"weights", "files", "content_digest"} <= d.keys():
            raise InvalidInput("A base manifest must be an object with weights, files and content_digest.")
        weights_json, files = d["weights"], d["files"]
        if not isinstance(weights_json, dict):
            raise InvalidInput("Base manifest weights must be an object of name -> {shape, dtype}.")
        weights = {name: _weight_from_json(name, value) for name, value in weights_json.items()}
        digest = content_digest(files)
        if d.get("quantization") != (quantization := cls(weights, {}, "").quantization):
            raise InvalidInput(
                f"Base manifest quantization {d.get('quantization')!r} does not match its weights' "
                f"({quantization!r}); the manifest is corrupt, register the base again."
            )
        if d["content_digest"] != digest:
            raise InvalidInput(
                f"Base manifest content_digest {d['content_digest']!r} does not match its files "
                f"(which hash to {digest}); the manifest is corrupt, register the base again."
            )
        return cls(weights=weights, files=dict(files), content_digest=digest)


def content_digest(files: dict[str, str]) -> str:
    """sha256 hex of the canonical JSON of ``{weight filename: sha256 hex}``."""
    if not isinstance(files, dict):
        raise InvalidInput("Base weight files must be an object mapping filename -> sha256 hex.")
    for name, sha in files.items():
        if not isinstance(name, str) or not isinstance(sha, str) or not _SHA256_HEX.fullmatch(sha):
            raise InvalidInput(
                f"Base weight file {name!r} has digest {sha!r}; expected a sha256: 64 lowercase hex digits."
            )
    canonical = json.dumps(dict(sorted(files.items())), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class WeightFiles(Protocol):
    """Where a base model's top-level files are read from: a directory, the HF cache, a Hub repository."""

    where: str  # how messages name the place

    def names(self) -> Collection[str]:
        """The top-level file names."""
        ...

    def read(self, name: str) -> bytes:
        """A small file's bytes (the shard index)."""
        ...

    def header(self, name: str) -> SafetensorsHeader:
        """A safetensors file's validated header."""
        ...

    def sha256(self, name: str) -> str:
        """A file's sha256 hex."""
        ...

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a file from ``offset`` (a quantized weight's quant state)."""
        ...


class DirectoryFiles:
    """A base model's files in a local directory (hashed as they are read)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.where = str(self.directory)

    def names(self) -> Collection[str]:
        return {path.name for path in self.directory.iterdir() if path.is_file()}

    def read(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()

    def header(self, name: str) -> SafetensorsHeader:
        return parse_header_file(self.directory / name)

    def sha256(self, name: str) -> str:
        return _sha256_file(self.directory / name)

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        with (self.directory / name).open("rb") as handle:
            handle.seek(offset)
            return handle.read(length)


def read_base_manifest(directory: Path) -> BaseManifest:
    """Build the manifest of the base model in ``directory`` from its safetensors headers and file hashes."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory; pass the base model's directory.")
    return manifest_from(DirectoryFiles(directory))


def manifest_from(files: WeightFiles) -> BaseManifest:
    """Build a base model's manifest from its safetensors headers and file hashes.

    Uses ``model.safetensors`` if present, else the shards named by ``model.safetensors.index.json``,
    else every ``*.safetensors`` file. Never loads tensor data.
    """
    available = files.names()
    weight_map: dict[str, str] | None = None
    if SINGLE_FILE in available:
        names = [SINGLE_FILE]
    elif INDEX_FILE in available:
        weight_map = _parse_weight_map(files.read(INDEX_FILE), f"{files.where}/{INDEX_FILE}")
        names = sorted(set(weight_map.values()))
        for name in names:
            if name not in available:
                raise InvalidInput(
                    f"{INDEX_FILE} names shard {name!r}, which is not in {files.where}; "
                    "download every shard of the base model."
                )
    else:
        names = sorted(name for name in available if name.endswith(".safetensors"))
        if not names:
            raise InvalidInput(
                f"{files.where} has no {SINGLE_FILE}, no {INDEX_FILE} and no *.safetensors files; the base "
                "model's weights must be in safetensors format (convert .bin/.pt weights first)."
            )
    headers = {name: files.header(name) for name in names}
    if weight_map is not None:
        _check_weight_map(weight_map, headers)
    hashes = {name: files.sha256(name) for name in names}
    weights = _two_d_weights(headers)
    weights.update(_quantized(files, headers))
    return BaseManifest(weights=weights, files=hashes, content_digest=content_digest(hashes))


def _quantized(files: WeightFiles, headers: dict[str, SafetensorsHeader]) -> dict[str, WeightShape]:
    """The bitsandbytes-quantized weights at their logical shapes (they replace the packed tensors)."""
    located = {
        name: (shard, info) for shard, header in headers.items() for name, info in header.tensors.items()
    }

    def read(name: str) -> bytes:
        shard, info = located[name]
        return files.read_at(shard, headers[shard].data_start + info.begin, info.end - info.begin)

    found = quantized_weights(
        {name: info for name, (_, info) in located.items()},
        read,
        where=files.where,
        model_dtype=_model_dtype(files),
    )
    return {name: WeightShape(q.shape, q.dtype, quantized=q.kind) for name, q in found.items()}


def _model_dtype(files: WeightFiles) -> str | None:
    """config.json's ``torch_dtype`` (or ``dtype``) as a safetensors dtype name, if it says one."""
    if MODEL_CONFIG not in files.names():
        return None
    try:
        config = json.loads(files.read(MODEL_CONFIG)[:MAX_MODEL_CONFIG])
    except (ValueError, RecursionError):
        return None
    if not isinstance(config, dict):
        return None
    dtype = config.get("torch_dtype", config.get("dtype"))
    return TORCH_DTYPES.get(dtype) if isinstance(dtype, str) else None


def _parse_weight_map(data: bytes, where: str) -> dict[str, str]:
    try:
        index = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{where} is not valid JSON ({exc}); download it again.") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InvalidInput(f"{where} has no weight_map object naming the shard of each tensor.")
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or Path(shard).name != shard or shard in {".", ".."}:
            raise InvalidInput(
                f"{where}: weight_map[{tensor!r}] is {shard!r}; shards must be plain file names in the "
                "model's directory."
            )
    return weight_map


def _check_weight_map(weight_map: dict[str, str], headers: dict[str, SafetensorsHeader]) -> None:
    for tensor, shard in weight_map.items():
        if tensor not in headers[shard].tensors:
            raise InvalidInput(
                f"{INDEX_FILE} puts tensor {tensor!r} in {shard!r}, but that shard has no such tensor; "
                "the index and the shards do not belong together, download the base model again."
            )


def _two_d_weights(headers: dict[str, SafetensorsHeader]) -> dict[str, WeightShape]:
    weights: dict[str, WeightShape] = {}
    seen_in: dict[str, str] = {}
    for filename, header in headers.items():
        for name, info in header.tensors.items():
            if name in seen_in:
                raise InvalidInput(
                    f"Tensor {name!r} is in both {seen_in[name]!r} and {filename!r}; "
                    "keep only one copy of the base model's weights in the directory."
                )
            seen_in[name] = filename
            if len(info.shape) == 2:
                weights[name] = WeightShape(shape=info.shape, dtype=info.dtype)
    return weights


def _weight_json(weight: WeightShape) -> dict[str, Any]:
    quantized = {"quantized": weight.quantized} if weight.quantized is not None else {}
    return {"shape": list(weight.shape), "dtype": weight.dtype, **quantized}


def _weight_from_json(name: Any, value: Any) -> WeightShape:
    shape = value.get("shape") if isinstance(value, dict) else None
    dtype = value.get("dtype") if isinstance(value, dict) else None
    quantized = value.get("quantized") if isinstance(value, dict) else None
    valid_shape = isinstance(shape, list) and all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape
    )
    if (
        not isinstance(name, str)
        or not valid_shape
        or not isinstance(dtype, str)
        or quantized not in (None, *KINDS)
    ):
        raise InvalidInput(
            f"Base manifest weight {name!r} must be {{shape: [non-negative ints], dtype: str"
            f"[, quantized: {' | '.join(KINDS)}]}}, got {value!r}."
        )
    assert isinstance(shape, list)  # valid_shape
    return WeightShape(shape=tuple(shape), dtype=dtype, quantized=quantized)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with path.open("rb") as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()
