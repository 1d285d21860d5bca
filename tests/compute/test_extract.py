"""extract_lora: a "fine-tune" that is base + a PEFT adapter merged by PEFT must give that adapter back."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from registry.compute.base_merge import merge_into_base, read_weights
from registry.compute.extract import extract_lora
from registry.compute.lora import load_adapter, save_adapter
from tests.compute.conftest import Base, logits, peft_merged, peft_with_adapter, quiet


def _finetune(base: Base, adapter_dir: Path, out: Path) -> Path:
    with quiet():
        peft_merged(base, adapter_dir).save_pretrained(out, safe_serialization=True)
    return out


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


@pytest.mark.parametrize(
    ("base_name", "r", "tolerance"),
    [("llama", 2, 1e-4), ("llama", 16, 1e-4), ("gpt2", 4, 1e-4), ("llama_bf16", 8, 5e-3)],
)
def test_extraction_recovers_the_merged_adapter(bases, peft_adapter, tmp_path, base_name, r, tolerance):
    base: Base = bases[base_name]
    adapter_dir = peft_adapter(base, seed=6, r=r)
    finetuned = _finetune(base, adapter_dir, tmp_path / "finetuned")

    adapter, report = extract_lora(base.path, finetuned, rank=r, base_model_name_or_path="tiny-base")

    truth = load_adapter(adapter_dir)
    assert set(adapter.modules) == set(truth.modules) == set(report["modules"])
    for name, expected in truth.modules.items():
        got = adapter.modules[name]
        assert got.rank == report["modules"][name]["rank"] == r
        assert got.transposed_in_base == expected.transposed_in_base
        assert _relative_error(got.delta(torch.float64), expected.delta(torch.float64)) <= tolerance
        assert report["modules"][name]["retained_energy"] >= 1 - tolerance
        assert report["modules"][name]["relative_error"] <= tolerance
    config = adapter.config
    assert (config["peft_type"], config["r"], config["lora_alpha"], config["rank_pattern"]) == (
        "LORA",
        r,
        r,
        {},
    )
    assert config["base_model_name_or_path"] == "tiny-base"
    assert config["fan_in_fan_out"] == (base_name == "gpt2")
    assert sorted(config["target_modules"]) == sorted(base.targets)

    save_adapter(tmp_path / "extracted", adapter)
    got = logits(peft_with_adapter(base, tmp_path / "extracted"))
    expected = logits(peft_with_adapter(base, adapter_dir))
    atol = 1e-4 if base.dtype == torch.float32 else 0.1
    torch.testing.assert_close(got, expected, rtol=atol, atol=atol)
    if base.dtype == torch.float32:
        torch.testing.assert_close(
            got, logits(base.__class__(finetuned, base.model).load()), rtol=1e-4, atol=1e-4
        )


def test_energy_picks_the_smallest_rank_keeping_the_fraction(llama, peft_adapter, tmp_path):
    finetuned = _finetune(llama, peft_adapter(llama, seed=7, r=8), tmp_path / "finetuned")

    adapter, report = extract_lora(llama.path, finetuned, energy=0.9)

    base, tuned = read_weights(llama.path), read_weights(finetuned)
    for name, module in adapter.modules.items():
        delta = tuned.read(f"{name}.weight").double() - base.read(f"{name}.weight").double()
        energy = torch.linalg.svdvals(delta) ** 2
        kept = torch.cumsum(energy, 0) / energy.sum()
        smallest = int((kept < 0.9).sum()) + 1
        assert module.rank == smallest, name
        entry = report["modules"][name]
        assert entry["retained_energy"] == pytest.approx(float(kept[smallest - 1]), rel=1e-5)
        assert entry["retained_energy"] >= 0.9 > (float(kept[smallest - 2]) if smallest > 1 else 0.0)
        expected_error = float(delta.norm() ** 2 * (1 - kept[smallest - 1])) ** 0.5
        assert float((module.delta(torch.float64) - delta).norm()) == pytest.approx(expected_error, rel=1e-3)
        assert entry["relative_error"] == pytest.approx(expected_error / float(delta.norm()), rel=1e-3)

    ranks = {module.rank for module in adapter.modules.values()}
    assert len(ranks) > 1, "the test needs modules of different ranks to exercise rank_pattern"
    config = adapter.config
    assert config["rank_pattern"] and config["rank_pattern"] == config["alpha_pattern"]
    assert all(
        config["rank_pattern"][n] == m.rank for n, m in adapter.modules.items() if m.rank != config["r"]
    )
    # PEFT rebuilds every module with its own rank and scale 1: its logits equal ours merged in.
    save_adapter(tmp_path / "extracted", adapter)
    saved = json.loads((tmp_path / "extracted" / "adapter_config.json").read_text())
    assert saved["rank_pattern"] == config["rank_pattern"]
    merge_into_base(adapter, llama.path, tmp_path / "merged")
    torch.testing.assert_close(
        logits(peft_with_adapter(llama, tmp_path / "extracted")),
        logits(Base(tmp_path / "merged", llama.model).load()),
        rtol=1e-5,
        atol=1e-5,
    )


def test_norms_and_unchanged_weights_are_skipped(llama, tmp_path):
    model = copy.deepcopy(llama.model)
    torch.manual_seed(0)
    u, v = torch.randn(64, 1), torch.randn(1, 64)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight += 0.01 * u @ v
        model.model.layers[1].input_layernorm.weight += 0.1
    with quiet():
        model.save_pretrained(tmp_path / "finetuned", safe_serialization=True)

    adapter, report = extract_lora(llama.path, tmp_path / "finetuned", rank=4)

    assert list(adapter.modules) == ["model.layers.0.self_attn.q_proj"]
    module = adapter.modules["model.layers.0.self_attn.q_proj"]
    assert module.rank == 4
    assert _relative_error(module.delta(torch.float64), 0.01 * (u @ v).double()) < 1e-4
    assert list(report["skipped"]) == ["model.layers.1.input_layernorm.weight"]
    assert "1-D" in report["skipped"]["model.layers.1.input_layernorm.weight"]
    assert report["unchanged"] == len(read_weights(llama.path).locations) - 2
    assert adapter.config["target_modules"] == [
        "model.layers.0.self_attn.q_proj"
    ]  # "q_proj" would add layer 1


def test_rank_or_energy_is_required(llama):
    with pytest.raises(ValueError, match="exactly one"):
        extract_lora(llama.path, llama.path)
    with pytest.raises(ValueError, match="exactly one"):
        extract_lora(llama.path, llama.path, rank=4, energy=0.9)
    with pytest.raises(ValueError, match="energy"):
        extract_lora(llama.path, llama.path, energy=1.5)
    with pytest.raises(ValueError, match="nothing to extract"):
        extract_lora(llama.path, llama.path, rank=4)
