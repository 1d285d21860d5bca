"""bitsandbytes-quantized bases: their manifests record each weight's logical shape and how it is stored,
a QLoRA adapter fits both the quantized base and its full-precision one, and merge-base into either equals
PEFT's merge_and_unload (into the quantized one: dequantize, merge, requantize)."""

from __future__ import annotations

import copy
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from registry.adapters.base_manifest import BaseManifest, read_base_manifest
from registry.adapters.compatibility import check_adapter
from registry.adapters.config import parse_adapter_config
from registry.adapters.safetensors_header import parse_header_file
from registry.compute.base_merge import merge_into_base
from registry.compute.lora import IncompatibleAdapters, load_adapter
from registry.errors import InvalidInput
from tests.quantized_models import Pair, load_quantized, make_full, make_pair, make_qlora

pytest.importorskip("bitsandbytes")
WEIGHT = "model.layers.0.mlp.down_proj.weight"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pair]:
    root = tmp_path_factory.mktemp("pairs")
    found = {"nf4": make_pair(root, "nf4")}
    for kind in ("fp4", "int8"):
        found[kind] = Pair(found["nf4"].full, root / kind, kind)
        load_quantized(found["nf4"].full, kind).save_pretrained(found[kind].quantized)
    return found


@pytest.fixture(scope="module")
def qlora(pairs: dict[str, Pair], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_qlora(pairs["nf4"], tmp_path_factory.mktemp("qlora"), name="tiny-llama-nf4")


@pytest.mark.parametrize("kind", ["nf4", "fp4", "int8"])
def test_manifest_records_logical_shapes_and_the_quantization(pairs: dict[str, Pair], kind: str) -> None:
    full = read_base_manifest(pairs[kind].full)
    quantized = read_base_manifest(pairs[kind].quantized)
    assert {n: w.shape for n, w in quantized.weights.items()} == {n: w.shape for n, w in full.weights.items()}
    assert quantized.quantization == f"bnb-{kind}" and full.quantization is None
    assert quantized.weights[WEIGHT].quantized == f"bnb-{kind}"
    assert quantized.weights[WEIGHT].dtype == "BF16"
    assert quantized.weights["model.embed_tokens.weight"].quantized is None  # transformers keeps it bf16
    stored = parse_header_file(pairs[kind].quantized / "model.safetensors").tensors[WEIGHT]
    assert stored.dtype == ("I8" if kind == "int8" else "U8")
    assert BaseManifest.from_json(json.loads(json.dumps(quantized.to_json()))) == quantized
    assert "quantization" not in full.to_json()  # full-precision manifests are as they were


def test_from_json_refuses_a_quantization_its_weights_do_not_have(pairs: dict[str, Pair]) -> None:
    data = read_base_manifest(pairs["nf4"].quantized).to_json()
    with pytest.raises(InvalidInput, match="quantization 'bnb-fp4' does not match"):
        BaseManifest.from_json({**data, "quantization": "bnb-fp4"})
    data["weights"][WEIGHT]["quantized"] = "gptq"
    with pytest.raises(InvalidInput, match=r"quantized: bnb-nf4 \| bnb-fp4 \| bnb-int8"):
        BaseManifest.from_json(data)


def _four_bit_file(path: Path, state: dict[str, object], *, packed: int, blocks: int) -> None:
    """A 4-bit weight as the documented format has it, written without bitsandbytes."""
    raw = json.dumps(state).encode()
    save_file(
        {
            "w.weight": torch.zeros(packed, 1, dtype=torch.uint8),
            "w.weight.absmax": torch.ones(blocks),
            "w.weight.quant_map": torch.zeros(16),
            "w.weight.quant_state.bitsandbytes__nf4": torch.tensor(list(raw), dtype=torch.uint8),
        },
        path / "model.safetensors",
    )


def test_the_documented_format_without_bitsandbytes(tmp_path: Path) -> None:
    state = {"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [32, 16]}
    _four_bit_file(tmp_path, state, packed=256, blocks=8)
    weight = read_base_manifest(tmp_path).weights["w.weight"]
    assert (weight.shape, weight.dtype, weight.quantized) == ((32, 16), "F16", "bnb-nf4")


@pytest.mark.parametrize(
    ("state", "packed", "blocks", "problem"),
    [
        ({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [32, 32]}, 256, 8, "take 512"),
        ({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [32, 16]}, 256, 4, "8 absmax"),
        ({"quant_type": "fp4", "blocksize": 64, "dtype": "float16", "shape": [32, 16]}, 256, 8, "named for"),
        ({"quant_type": "nf4", "blocksize": 64, "dtype": "int4", "shape": [32, 16]}, 256, 8, "dequantizes"),
        ({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": "32x16"}, 256, 8, "logical"),
        ({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [2], "x": 1}, 1, 1, "unknown"),
    ],
)
def test_inconsistent_quant_states_are_refused(
    tmp_path: Path, state: dict[str, object], packed: int, blocks: int, problem: str
) -> None:
    _four_bit_file(tmp_path, state, packed=packed, blocks=blocks)
    with pytest.raises(InvalidInput, match=problem):
        read_base_manifest(tmp_path)


def test_a_qlora_adapter_fits_the_quantized_base_and_its_full_one(
    pairs: dict[str, Pair], qlora: Path
) -> None:
    config = parse_adapter_config((qlora / "adapter_config.json").read_bytes())
    header = parse_header_file(qlora / "adapter_model.safetensors")
    for directory in (pairs["nf4"].quantized, pairs["nf4"].full, pairs["int8"].quantized):
        assert len(check_adapter(config, header, read_base_manifest(directory))) == 4


def test_merge_base_into_the_full_base_equals_peft(
    pairs: dict[str, Pair], qlora: Path, tmp_path: Path
) -> None:
    """The seeds' recipe: train on the 4-bit base, merge into the bf16 one."""
    full = make_full(tmp_path / "again")  # the same seed: the same weights as pairs' full base
    merge_into_base(load_adapter(qlora), pairs["nf4"].full, tmp_path / "merged")
    expected = PeftModel.from_pretrained(copy.deepcopy(full), str(qlora)).merge_and_unload().state_dict()
    got = load_file(tmp_path / "merged" / "model.safetensors")
    for name, tensor in expected.items():
        if name in got:
            assert torch.equal(got[name], tensor), name


def test_merge_base_into_the_quantized_base_equals_peft(
    pairs: dict[str, Pair], qlora: Path, tmp_path: Path
) -> None:
    pair = pairs["nf4"]
    report = merge_into_base(load_adapter(qlora), pair.quantized, tmp_path / "merged")
    assert report["quantization"] == "bnb-nf4" and len(report["requantized"]) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = PeftModel.from_pretrained(load_quantized(pair.quantized, "nf4"), str(qlora))
        reference = reference.merge_and_unload()
        ours = load_quantized(tmp_path / "merged", "nf4")
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"):
        theirs_w, ours_w = (_dequantized(m.get_submodule(name).weight) for m in (reference, ours))
        assert ours_w.dtype == theirs_w.dtype == torch.float32  # requantized from W + ΔW in fp32, as PEFT
        assert torch.allclose(ours_w, theirs_w, rtol=0, atol=1e-6), name
    untouched = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(
        load_file(tmp_path / "merged" / "model.safetensors")[untouched],
        load_file(pair.quantized / "model.safetensors")[untouched],
    )
    assert read_base_manifest(tmp_path / "merged").quantization == "bnb-nf4"


def _dequantized(weight: torch.Tensor) -> torch.Tensor:
    import bitsandbytes.functional as functional

    return functional.dequantize_4bit(weight.data, weight.quant_state)


def test_merge_into_a_quantized_base_without_bitsandbytes_refuses(
    pairs: dict[str, Pair], qlora: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", None)
    with pytest.raises(IncompatibleAdapters, match="requantizes with bitsandbytes, which is not installed"):
        merge_into_base(load_adapter(qlora), pairs["nf4"].quantized, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
