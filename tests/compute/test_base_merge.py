"""merge_into_base against PEFT's merge_and_unload on the same adapter and base."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from registry.adapters.safetensors_header import parse_header_file
from registry.compute.base_merge import merge_into_base, read_weights
from registry.compute.lora import IncompatibleAdapters, LoraAdapter, LoraModule, load_adapter
from tests.compute.conftest import Base, logits, peft_merged

INDEX = "model.safetensors.index.json"


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.state_dict().items()}


def _tensor(directory: Path, name: str) -> torch.Tensor:
    weights = read_weights(directory)
    return weights.read(name)


def _ulp_error(got: torch.Tensor, exact: torch.Tensor) -> float:
    """The largest error of ``got`` (bf16) against ``exact`` (fp64) in units of bf16's last place."""
    exponent = torch.floor(torch.log2(exact.abs().clamp_min(2.0**-126)))
    return float(((got.double() - exact).abs() / 2.0 ** (exponent - 7)).max())


@pytest.mark.parametrize(
    ("base_name", "r", "extra_targets"),
    [
        ("llama", 2, ()),
        ("llama_sharded", 16, ("embed_tokens", "lm_head")),
        ("llama_bf16", 8, ()),
        ("gpt2", 4, ()),
    ],
)
def test_merge_matches_peft_merge_and_unload(bases, peft_adapter, tmp_path, base_name, r, extra_targets):
    base: Base = bases[base_name]
    adapter_dir = peft_adapter(base, seed=3, r=r, targets=(*base.targets, *extra_targets))
    adapter = load_adapter(adapter_dir)
    out = tmp_path / "merged"

    report = merge_into_base(adapter, base.path, out)

    oracle = peft_merged(base, adapter_dir)
    ours = base.__class__(out, base.model, dtype=base.dtype).load()
    expected, got = _state(oracle), _state(ours)
    touched = {m["tensor"] for m in report["merged"]}
    assert len(touched) == len(adapter.modules) == report["modules_merged"]
    for merged in report["merged"]:
        name, before = merged["tensor"], _tensor(base.path, merged["tensor"])
        if base.dtype == torch.float32:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
        else:  # W + ΔW rounded once to bf16, as PEFT does (its ΔW stays fp32): the same bits, bar a rare tie
            exact = before.double() + adapter.modules[merged["module"]].base_orientation_delta(torch.float64)
            assert _ulp_error(got[name], exact) <= 0.55
            assert float((got[name] == expected[name]).double().mean()) > 0.99
            assert _ulp_error(got[name], expected[name].double()) <= 1.0
        assert not torch.equal(got[name], before), f"{name} was not changed"
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if base.dtype == torch.float32 else {"rtol": 0.05, "atol": 0.05}
    torch.testing.assert_close(logits(ours), logits(oracle), **tolerance)
    assert not torch.allclose(logits(ours), logits(base.load()), atol=1e-3), "the merge changed nothing"

    # Same shard layout, same headers; a sharded base gets an index with the same weight map.
    inputs = sorted(p.name for p in base.path.glob("*.safetensors"))
    assert sorted(p.name for p in out.glob("*.safetensors")) == inputs == report["shards_written"]
    for shard in inputs:
        assert parse_header_file(out / shard) == parse_header_file(base.path / shard)
    if (base.path / INDEX).exists():
        assert len(inputs) > 1
        assert (
            json.loads((out / INDEX).read_text())["weight_map"]
            == json.loads((base.path / INDEX).read_text())["weight_map"]
        )
    assert {"config.json", "generation_config.json"} <= set(report["files_copied"])
    assert report["tensors_copied"] == len(read_weights(base.path).locations) - len(touched)


def test_bf16_adapter_into_bf16_base_is_fused_and_rounded_once(llama_bf16, peft_adapter, tmp_path):
    """Factors exact in the weight's dtype take the fused in-place addmm_; still one rounding of W + ΔW."""
    adapter = load_adapter(peft_adapter(llama_bf16, seed=5, r=8), dtype=torch.bfloat16)
    report = merge_into_base(adapter, llama_bf16.path, tmp_path / "out")
    assert report["modules_merged"] == len(adapter.modules) == 14
    for merged in report["merged"]:
        module = adapter.modules[merged["module"]]
        exact = _tensor(llama_bf16.path, merged["tensor"]).double() + module.delta(torch.float64)
        assert _ulp_error(_tensor(tmp_path / "out", merged["tensor"]), exact) <= 0.55


def test_untouched_tensors_are_copied_byte_for_byte(llama_sharded, peft_adapter, tmp_path):
    adapter = load_adapter(peft_adapter(llama_sharded, seed=4, r=4, targets=("q_proj", "down_proj")))
    out = tmp_path / "merged"
    report = merge_into_base(adapter, llama_sharded.path, out)
    touched = {m["tensor"] for m in report["merged"]}
    weights = read_weights(llama_sharded.path)
    untouched = 0
    for name, shard in weights.locations.items():
        info = weights.info(name)
        start = weights.headers[shard].data_start
        source = (llama_sharded.path / shard).read_bytes()[start + info.begin : start + info.end]
        copied = (out / shard).read_bytes()[start + info.begin : start + info.end]
        if name in touched:
            assert copied != source
        else:
            assert copied == source, f"{name} changed although the adapter does not touch it"
            untouched += 1
    assert untouched == report["tensors_copied"] > 0
    shards_with_merges = {m["shard"] for m in report["merged"]}
    for shard in set(weights.headers) - shards_with_merges:
        assert (out / shard).read_bytes() == (llama_sharded.path / shard).read_bytes()


def _single_module(name: str, out_features: int, in_features: int, **kwargs) -> LoraAdapter:
    torch.manual_seed(0)
    module = LoraModule(A=torch.randn(2, in_features), B=torch.randn(out_features, 2), scale=0.5, **kwargs)
    return LoraAdapter(modules={name: module}, config={"peft_type": "LORA", "r": 2, "lora_alpha": 1})


def test_module_names_resolve_by_unique_suffix(llama, tmp_path):
    """An adapter saved on the inner model (no "model." prefix) still finds its weight, like at push."""
    adapter = _single_module("layers.1.self_attn.q_proj", 64, 64)
    report = merge_into_base(adapter, llama.path, tmp_path / "out")
    assert report["merged"] == [
        {
            "module": "layers.1.self_attn.q_proj",
            "tensor": "model.layers.1.self_attn.q_proj.weight",
            "shard": "model.safetensors",
            "update": "lora",
        }
    ]
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as merged:
        got = merged.get_tensor("model.layers.1.self_attn.q_proj.weight")
    base = _tensor(llama.path, "model.layers.1.self_attn.q_proj.weight")
    module = adapter.modules["layers.1.self_attn.q_proj"]
    torch.testing.assert_close(got, base + module.delta(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("module", "shape", "transposed", "message"),
    [
        ("model.layers.7.self_attn.q_proj", (64, 64), False, "has no weight in the base"),
        ("q_proj", (64, 64), False, "matches several base weights"),
        ("model.layers.0.self_attn.k_proj", (64, 64), False, "needs base weight"),  # k_proj is 32×64
        ("model.layers.0.mlp.up_proj", (64, 64), True, "needs base weight"),  # up_proj is 128×64
    ],
)
def test_refuses_a_base_that_does_not_fit(llama, tmp_path, module, shape, transposed, message):
    adapter = _single_module(module, *shape, transposed_in_base=transposed)
    out = tmp_path / "out"
    with pytest.raises(IncompatibleAdapters, match=re.escape(message)):
        merge_into_base(adapter, llama.path, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


def test_orientation_is_decided_per_module_from_the_base(llama, tmp_path):
    """A (128, 64) update flagged (in, out) fits the base only as (out, in): PEFT's Linear layers say so."""
    adapter = _single_module("model.layers.0.mlp.up_proj", 128, 64, transposed_in_base=True)
    merge_into_base(adapter, llama.path, tmp_path / "out")
    got = _tensor(tmp_path / "out", "model.layers.0.mlp.up_proj.weight")
    base = _tensor(llama.path, "model.layers.0.mlp.up_proj.weight")
    module = adapter.modules["model.layers.0.mlp.up_proj"]
    torch.testing.assert_close(got, base + module.delta(), rtol=1e-6, atol=1e-6)


def test_refuses_saved_tensors_that_do_not_fit(llama, tmp_path):
    adapter = _single_module("model.layers.0.self_attn.q_proj", 64, 64)
    adapter.saved["lm_head.weight"] = torch.zeros(128, 65)
    with pytest.raises(IncompatibleAdapters, match=r"only the rows may differ"):
        merge_into_base(adapter, llama.path, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_output_directory(llama, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        merge_into_base(
            _single_module("model.layers.0.self_attn.q_proj", 64, 64), llama.path, tmp_path / "out"
        )
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
