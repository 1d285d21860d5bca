"""merge_into_base for every adapter kind PEFT can merge, against PEFT's merge_and_unload (≤ 1e-5 relative):
DoRA, lora_bias, modules_to_save (also a resized vocabulary), fan_in_fan_out per module, IA3, LoHa, and
integer/fp8 stored tensors; merge's refusals of what it cannot combine."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import IA3Config, LoHaConfig, LoKrConfig, LoraConfig, PeftModel, VeraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from registry.compute.base_merge import merge_into_base
from registry.compute.lora import IncompatibleAdapters, LoraAdapter, load_adapter, save_adapter
from registry.compute.merge import merge_adapters
from tests.compute.conftest import Base, quiet

TOKENS = torch.arange(24).unsqueeze(0) % 100


def make(base_model: torch.nn.Module, directory: Path, config: Any, *, seed: int = 1) -> Path:
    """Save a PEFT adapter of ``config`` for ``base_model`` with random non-zero trainable tensors."""
    torch.manual_seed(seed)
    with quiet():
        model = get_peft_model(copy.deepcopy(base_model), config)
        with torch.no_grad():
            for _, parameter in model.named_parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn_like(parameter) * 0.05)
        model.save_pretrained(directory)
    return directory


def oracle(base_dir: Path, adapter_dir: Path) -> dict[str, torch.Tensor]:
    with quiet():
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return {k: v.detach() for k, v in merged.state_dict().items()}


def assert_merge_equals_peft(base_dir: Path, adapter_dir: Path, out: Path) -> dict[str, Any]:
    report = merge_into_base(load_adapter(adapter_dir), base_dir, out)
    expected = oracle(base_dir, adapter_dir)
    with quiet():
        ours = AutoModelForCausalLM.from_pretrained(out).state_dict()
    changed = 0
    for name, tensor in expected.items():
        got = ours[name]
        assert got.shape == tensor.shape, name
        scale = max(float(tensor.abs().max()), 1e-30)
        assert float((got - tensor).abs().max()) <= 1e-5 * scale, name
        changed += 1
    assert changed and report["merged"]
    return report


@pytest.fixture(scope="module")
def gpt2_untied(tmp_path_factory: pytest.TempPathFactory) -> Base:
    """A tiny GPT-2 with an untied Linear lm_head (stored (out, in)) next to its Conv1D blocks ((in, out))."""
    path = tmp_path_factory.mktemp("gpt2-untied")
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=64,
        n_layer=2,
        n_head=4,
        vocab_size=100,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=False,
    )
    with quiet():
        model = GPT2LMHeadModel(config).eval()
        model.save_pretrained(path, safe_serialization=True)
    return Base(path, model)


def test_dora_merge_equals_peft(llama: Base, tmp_path: Path) -> None:
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True)
    adapter = make(llama.model, tmp_path / "dora", config)
    loaded = load_adapter(adapter)
    assert loaded.dora and all(m.magnitude is not None for m in loaded.modules.values())
    report = assert_merge_equals_peft(llama.path, adapter, tmp_path / "out")
    assert report["dora_modules"] == len(loaded.modules) == 6


def test_dora_on_conv1d_and_embedding_equals_peft(gpt2_untied: Base, tmp_path: Path) -> None:
    config = LoraConfig(r=4, target_modules=["c_attn", "c_proj", "wte", "lm_head"], use_dora=True)
    adapter = make(gpt2_untied.model, tmp_path / "dora", config)
    assert_merge_equals_peft(gpt2_untied.path, adapter, tmp_path / "out")


def test_gpt2_fan_in_fan_out_per_module(gpt2_untied: Base, tmp_path: Path) -> None:
    """Conv1D blocks (in, out) and the Linear head (out, in), whatever fan_in_fan_out the config says."""
    config = LoraConfig(r=4, target_modules=["c_attn", "c_proj", "c_fc", "lm_head"], fan_in_fan_out=True)
    adapter = make(gpt2_untied.model, tmp_path / "a", config)
    assert_merge_equals_peft(gpt2_untied.path, adapter, tmp_path / "out")


def test_gpt2_lora_bias_and_modules_to_save(gpt2_untied: Base, tmp_path: Path) -> None:
    config = LoraConfig(
        r=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, lora_bias=True, modules_to_save=["wpe"]
    )
    adapter = make(gpt2_untied.model, tmp_path / "a", config)
    loaded = load_adapter(adapter)
    assert "transformer.wpe.weight" in loaded.saved
    assert all(m.bias is not None for m in loaded.modules.values())
    report = assert_merge_equals_peft(gpt2_untied.path, adapter, tmp_path / "out")
    assert report["biases_merged"] == len(loaded.modules) == 4
    assert report["tensors_replaced"] == ["transformer.wpe.weight"]


def test_modules_to_save_on_llama(llama: Base, tmp_path: Path) -> None:
    config = LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head", "embed_tokens"])
    adapter = make(llama.model, tmp_path / "a", config)
    report = assert_merge_equals_peft(llama.path, adapter, tmp_path / "out")
    assert report["tensors_replaced"] == ["lm_head.weight", "model.embed_tokens.weight"]


def test_resized_vocabulary_rewrites_the_shard(llama: Base, tmp_path: Path) -> None:
    """embed_tokens/lm_head trained on 130 tokens: the merged model has them, and vocab_size 130."""
    with quiet():
        model = copy.deepcopy(llama.model)
        model.resize_token_embeddings(130)
    config = LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head", "embed_tokens"])
    adapter = make(model, tmp_path / "a", config)
    out = tmp_path / "out"
    report = merge_into_base(load_adapter(adapter), llama.path, out)
    assert report["resized"] == {"lm_head.weight": [130, 64], "model.embed_tokens.weight": [130, 64]}
    with quiet():
        resized = copy.deepcopy(llama.model)
        resized.resize_token_embeddings(130)
        expected = PeftModel.from_pretrained(resized, adapter).merge_and_unload().state_dict()
        ours = AutoModelForCausalLM.from_pretrained(out)
    assert ours.config.vocab_size == 130
    for name, tensor in expected.items():
        assert torch.allclose(ours.state_dict()[name], tensor, rtol=0, atol=1e-6), name


def test_ia3_merge_equals_peft(llama: Base, tmp_path: Path) -> None:
    config = IA3Config(target_modules=["q_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])
    adapter = make(llama.model, tmp_path / "ia3", config)
    loaded = load_adapter(adapter)
    assert loaded.peft_type == "IA3" and not loaded.modules and len(loaded.other) == 6
    assert_merge_equals_peft(llama.path, adapter, tmp_path / "out")


def test_ia3_on_gpt2_with_biases_equals_peft(gpt2_untied: Base, tmp_path: Path) -> None:
    config = IA3Config(target_modules=["c_attn", "c_fc"], feedforward_modules=["c_fc"], fan_in_fan_out=True)
    adapter = make(gpt2_untied.model, tmp_path / "ia3", config)
    report = assert_merge_equals_peft(gpt2_untied.path, adapter, tmp_path / "out")
    assert report["biases_merged"] == 2  # the two non-feedforward c_attn biases


def test_loha_merge_equals_peft(llama: Base, tmp_path: Path) -> None:
    config = LoHaConfig(r=4, alpha=8, target_modules=["q_proj", "k_proj", "up_proj"])
    adapter = make(llama.model, tmp_path / "loha", config)
    assert_merge_equals_peft(llama.path, adapter, tmp_path / "out")


@pytest.mark.parametrize(
    "config",
    [LoKrConfig(r=4, target_modules=["q_proj"]), VeraConfig(r=4, target_modules=["q_proj"])],
    ids=["lokr", "vera"],
)
def test_other_types_are_refused_by_compute(llama: Base, tmp_path: Path, config: Any) -> None:
    adapter = make(llama.model, tmp_path / "a", config)
    with pytest.raises(IncompatibleAdapters, match=r"computes only with LoRA adapters.*merge-base"):
        load_adapter(adapter)


@pytest.mark.parametrize("dtype", [torch.int8, torch.float8_e4m3fn])
def test_integer_and_fp8_stored_tensors(llama: Base, tmp_path: Path, dtype: torch.dtype) -> None:
    """PEFT casts them into its float parameters; merge-base reads them the same way."""
    adapter = make(llama.model, tmp_path / "a", LoraConfig(r=4, target_modules=["q_proj"]))
    path = adapter / "adapter_model.safetensors"
    tensors = load_file(path)
    save_file({k: (v * 100).to(dtype) for k, v in tensors.items()}, path)
    assert_merge_equals_peft(llama.path, adapter, tmp_path / "out")


def test_merge_refuses_dora_and_lora_bias_naming_merge_base(llama: Base, tmp_path: Path) -> None:
    dora = load_adapter(
        make(llama.model, tmp_path / "d", LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    )
    plain = load_adapter(make(llama.model, tmp_path / "p", LoraConfig(r=4, target_modules=["q_proj"])))
    with pytest.raises(IncompatibleAdapters, match=r"DoRA adapter.*merge-base"):
        merge_adapters([plain, dora], [0.5, 0.5], "linear")
    ia3 = load_adapter(
        make(llama.model, tmp_path / "i", IA3Config(target_modules=["q_proj"], feedforward_modules=[]))
    )
    with pytest.raises(IncompatibleAdapters, match="IA3 adapter; merge combines LoRA adapters only"):
        merge_adapters([plain, ia3], [0.5, 0.5], "linear")


def test_merge_carries_modules_to_save_only_when_they_agree(llama: Base, tmp_path: Path) -> None:
    config = LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"])
    one = load_adapter(make(llama.model, tmp_path / "1", config, seed=1))
    two = load_adapter(make(llama.model, tmp_path / "2", config, seed=2))
    with pytest.raises(
        IncompatibleAdapters, match=r"save different modules_to_save tensors \(lm_head.weight\)"
    ):
        merge_adapters([one, two], [0.5, 0.5], "cat")
    same = LoraAdapter(modules=two.modules, config=two.config, saved=dict(one.saved))
    merged = merge_adapters([one, same], [0.5, 0.5], "cat")
    save_adapter(tmp_path / "out", merged.adapter)
    assert torch.equal(load_adapter(tmp_path / "out").saved["lm_head.weight"], one.saved["lm_head.weight"])
