"""read_base_manifest on real single-file and sharded checkpoints; manifest JSON round trip."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from registry.adapters.base_manifest import BaseManifest, WeightShape, content_digest, read_base_manifest
from registry.errors import InvalidInput

from .conftest import llama_model


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_single_file_manifest_has_every_2d_weight(llama_dir: Path, llama_base: BaseManifest) -> None:
    state = llama_model().state_dict()
    two_d = {name: tuple(t.shape) for name, t in state.items() if t.dim() == 2}
    assert {name: w.shape for name, w in llama_base.weights.items()} == two_d
    assert "model.layers.0.self_attn.k_proj.weight" in llama_base.weights
    assert llama_base.weights["model.layers.0.self_attn.k_proj.weight"] == WeightShape((32, 64), "F32")
    assert "model.norm.weight" not in llama_base.weights  # 1-D
    assert llama_base.files == {"model.safetensors": _sha256(llama_dir / "model.safetensors")}
    canonical = json.dumps(llama_base.files, sort_keys=True, separators=(",", ":")).encode()
    assert llama_base.content_digest == hashlib.sha256(canonical).hexdigest()


def test_sharded_manifest_matches_single_file(llama_sharded_dir: Path, llama_base: BaseManifest) -> None:
    shards = sorted(p.name for p in llama_sharded_dir.glob("*.safetensors"))
    assert len(shards) > 1 and (llama_sharded_dir / "model.safetensors.index.json").is_file()
    manifest = read_base_manifest(llama_sharded_dir)
    assert manifest.weights == llama_base.weights
    assert manifest.files == {name: _sha256(llama_sharded_dir / name) for name in shards}
    assert manifest.content_digest == content_digest(manifest.files) != llama_base.content_digest


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_index_naming_a_missing_shard(llama_sharded_dir: Path, tmp_path: Path) -> None:
    directory = _copy(llama_sharded_dir, tmp_path / "base")
    victim = sorted(directory.glob("model-*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(InvalidInput, match=re.escape(f"names shard '{victim.name}', which is not in")):
        read_base_manifest(directory)


def test_index_putting_a_tensor_in_the_wrong_shard(llama_sharded_dir: Path, tmp_path: Path) -> None:
    directory = _copy(llama_sharded_dir, tmp_path / "base")
    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shards = sorted(set(index["weight_map"].values()))
    tensor, shard = next(iter(index["weight_map"].items()))
    other = next(s for s in shards if s != shard)
    index["weight_map"][tensor] = other
    index_path.write_text(json.dumps(index))
    with pytest.raises(
        InvalidInput, match=re.escape(f"puts tensor '{tensor}' in '{other}', but that shard has no such")
    ):
        read_base_manifest(directory)


def test_index_with_path_traversal(llama_sharded_dir: Path, tmp_path: Path) -> None:
    directory = _copy(llama_sharded_dir, tmp_path / "base")
    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["lm_head.weight"] = "../model.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(InvalidInput, match="plain file names"):
        read_base_manifest(directory)


def test_loose_safetensors_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"a.weight": torch.zeros(3, 2), "a.bias": torch.zeros(3)}, tmp_path / "one.safetensors")
    save_file({"b.weight": torch.zeros(4, 5, dtype=torch.bfloat16)}, tmp_path / "two.safetensors")
    manifest = read_base_manifest(tmp_path)
    assert manifest.weights == {
        "a.weight": WeightShape((3, 2), "F32"),
        "b.weight": WeightShape((4, 5), "BF16"),
    }
    assert set(manifest.files) == {"one.safetensors", "two.safetensors"}

    save_file({"b.weight": torch.zeros(1, 1)}, tmp_path / "three.safetensors")
    with pytest.raises(InvalidInput, match=re.escape("'b.weight' is in both")):
        read_base_manifest(tmp_path)


def test_directory_without_safetensors(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(
        InvalidInput, match=re.escape("no model.safetensors, no model.safetensors.index.json and no")
    ):
        read_base_manifest(tmp_path)
    with pytest.raises(InvalidInput, match="is not a directory"):
        read_base_manifest(tmp_path / "missing")


def test_json_round_trip(llama_base: BaseManifest) -> None:
    data = json.loads(json.dumps(llama_base.to_json()))
    assert BaseManifest.from_json(data) == llama_base
    tampered = {**data, "files": {"model.safetensors": "0" * 64}}
    with pytest.raises(InvalidInput, match="does not match its files"):
        BaseManifest.from_json(tampered)
    bad_weight = {**data, "weights": {"x.weight": {"shape": [2, -1], "dtype": "F32"}}}
    with pytest.raises(InvalidInput, match=re.escape("'x.weight' must be")):
        BaseManifest.from_json(bad_weight)
    with pytest.raises(InvalidInput, match="must be an object with weights"):
        BaseManifest.from_json([])


def test_content_digest_is_canonical() -> None:
    a, b = "a" * 64, "b" * 64
    assert content_digest({"x": a, "y": b}) == content_digest({"y": b, "x": a})
    assert content_digest({"x": a, "y": b}) != content_digest({"x": b, "y": a})
    expected = hashlib.sha256(f'{{"x":"{a}","y":"{b}"}}'.encode()).hexdigest()
    assert content_digest({"y": b, "x": a}) == expected
    with pytest.raises(InvalidInput, match="64 lowercase hex"):
        content_digest({"x": "A" * 64})
