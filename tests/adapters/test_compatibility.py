"""check_adapter: real PEFT adapters pass with PEFT's own ranks/scalings; each rule of design §4 refuses."""

from __future__ import annotations

import dataclasses

import pytest
from peft.tuners.lora import LoraLayer

from registry.adapters.base_manifest import BaseManifest, WeightShape
from registry.adapters.compatibility import LoraModule, check, check_adapter
from registry.adapters.config import LoraConfig, parse_adapter_config
from registry.errors import InvalidAdapter

from .conftest import SavedAdapter, reconfigured
from .hostile import layout, parse, rebuilt

P = "base_model.model."
Q0 = "model.layers.0.self_attn.q_proj"
Q0_A, Q0_B = f"{P}{Q0}.lora_A.weight", f"{P}{Q0}.lora_B.weight"


def _peft_layers(adapter: SavedAdapter) -> dict[str, LoraLayer]:
    return {
        name.removeprefix(P): module
        for name, module in adapter.model.named_modules()
        if isinstance(module, LoraLayer)
    }


def _assert_matches_peft(adapter: SavedAdapter, modules: list[LoraModule]) -> None:
    """Modules, ranks, features and scalings agree with the PEFT model the adapter was saved from."""
    layers = _peft_layers(adapter)
    config = adapter.config
    assert [m.name for m in modules] == sorted(layers)
    for module in modules:
        layer = layers[module.name]
        assert module.rank == layer.r["default"] == config.rank_for(module.name)
        assert (module.in_features, module.out_features) == (layer.in_features, layer.out_features)
        assert config.scaling_for(module.name) == layer.scaling["default"], module.name
        assert config.alpha_for(module.name) == layer.lora_alpha["default"], module.name


def _refusal(config: LoraConfig, header, base: BaseManifest) -> str:
    with pytest.raises(InvalidAdapter) as caught:
        check_adapter(config, header, base)
    assert caught.value.code == "invalid_adapter"
    return caught.value.message


# --- real PEFT adapters pass ---------------------------------------------------------------------------


def test_llama_rank_pattern_alpha_pattern_rslora(
    llama_adapter: SavedAdapter, llama_base: BaseManifest
) -> None:
    modules = check_adapter(llama_adapter.config, llama_adapter.header, llama_base)
    assert len(modules) == 2 * 7
    by_name = {m.name: m for m in modules}
    assert by_name[Q0] == LoraModule(Q0, f"{Q0}.weight", 8, 64, 64, "linear")
    assert by_name["model.layers.1.mlp.down_proj"].rank == 2
    assert by_name["model.layers.0.mlp.down_proj"].rank == 4
    assert by_name["model.layers.0.self_attn.k_proj"].out_features == 32
    assert {m.kind for m in modules} == {"linear"}
    _assert_matches_peft(llama_adapter, modules)
    scalings = {llama_adapter.config.scaling_for(m.name) for m in modules}
    assert len(scalings) >= 4  # the patterns really produce different scalings


def test_llama_adapter_on_sharded_base(llama_adapter: SavedAdapter, llama_sharded_dir) -> None:
    from registry.adapters.base_manifest import read_base_manifest

    modules = check_adapter(llama_adapter.config, llama_adapter.header, read_base_manifest(llama_sharded_dir))
    assert len(modules) == 14


def test_gpt2_conv1d_fan_in_fan_out_with_lora_bias(
    gpt2_adapter: SavedAdapter, gpt2_base: BaseManifest
) -> None:
    config = gpt2_adapter.config
    assert config.fan_in_fan_out and config.lora_bias
    modules = check_adapter(config, gpt2_adapter.header, gpt2_base)
    by_name = {m.name: m for m in modules}
    c_attn = by_name["transformer.h.0.attn.c_attn"]
    assert (c_attn.in_features, c_attn.out_features, c_attn.rank) == (32, 96, 4)
    assert gpt2_base.weights[c_attn.base_weight].shape == (32, 96)  # Conv1D stores (in, out)
    c_fc = by_name["transformer.h.1.mlp.c_fc"]
    assert (c_fc.in_features, c_fc.out_features, c_fc.rank) == (32, 128, 2)
    _assert_matches_peft(gpt2_adapter, modules)


def test_embedding_lora_with_base_copy_and_modules_to_save(
    embedding_adapter: SavedAdapter, llama_base: BaseManifest
) -> None:
    header = embedding_adapter.header
    assert f"{P}model.embed_tokens.base_layer.weight" in header.tensors  # saved by PEFT
    assert f"{P}lm_head.weight" in header.tensors  # modules_to_save
    modules = check_adapter(embedding_adapter.config, header, llama_base)
    embed = next(m for m in modules if m.name == "model.embed_tokens")
    assert embed == LoraModule("model.embed_tokens", "model.embed_tokens.weight", 4, 128, 64, "embedding")
    assert header.tensors[f"{P}model.embed_tokens.lora_embedding_A"].shape == (4, 128)
    assert header.tensors[f"{P}model.embed_tokens.lora_embedding_B"].shape == (64, 4)
    _assert_matches_peft(embedding_adapter, modules)


def test_base_keys_with_or_without_a_prefix(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    stripped = dataclasses.replace(
        llama_base, weights={k.removeprefix("model."): w for k, w in llama_base.weights.items()}
    )
    modules = check_adapter(llama_adapter.config, llama_adapter.header, stripped)
    assert {m.name: m.base_weight for m in modules}[Q0] == "layers.0.self_attn.q_proj.weight"

    prefixed = dataclasses.replace(
        llama_base, weights={f"language_model.{k}": w for k, w in llama_base.weights.items()}
    )
    modules = check_adapter(llama_adapter.config, llama_adapter.header, prefixed)
    assert {m.name: m.base_weight for m in modules}[Q0] == f"language_model.{Q0}.weight"


# --- one refusal per rule ------------------------------------------------------------------------------


def test_lora_a_wrong_in_features(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    header = rebuilt(llama_adapter.header, change={Q0_A: ("F32", (8, 48))})
    message = _refusal(llama_adapter.config, header, llama_base)
    assert f"module '{Q0}': A (8, 48) and B (64, 8) do not fit base weight '{Q0}.weight' (64, 64)" in message
    assert "A must be (8, 64)" in message


def test_lora_b_wrong_out_features(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    k0 = "model.layers.0.self_attn.k_proj"
    header = rebuilt(llama_adapter.header, change={f"{P}{k0}.lora_B.weight": ("F32", (64, 4))})
    message = _refusal(llama_adapter.config, header, llama_base)
    assert f"module '{k0}': A (4, 64) and B (64, 4) do not fit base weight '{k0}.weight' (32, 64)" in message
    assert "A must be (4, 64) and B (32, 4)" in message


def test_fan_in_fan_out_is_decided_per_module_on_conv1d(
    gpt2_adapter: SavedAdapter, gpt2_base: BaseManifest
) -> None:
    """PEFT sets fan_in_fan_out per layer (Conv1D: true) whatever the config says; so does the check."""
    expected = check_adapter(gpt2_adapter.config, gpt2_adapter.header, gpt2_base)
    config = reconfigured(gpt2_adapter.config, fan_in_fan_out=False)
    modules = check_adapter(config, gpt2_adapter.header, gpt2_base)
    assert modules == expected and all(m.fan_in_fan_out for m in modules)


def test_fan_in_fan_out_on_linear_layers(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    config = reconfigured(llama_adapter.config, fan_in_fan_out=True)
    modules = check_adapter(config, llama_adapter.header, llama_base)
    # k_proj (32, 64) fits only (out, in); square q_proj follows the adapter's other modules, as PEFT's
    # Linear layers all get fan_in_fan_out=false
    assert not any(m.fan_in_fan_out for m in modules)
    assert modules == check_adapter(llama_adapter.config, llama_adapter.header, llama_base)


def test_factors_that_fit_neither_orientation(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    k0_a = f"{P}model.layers.0.self_attn.k_proj.lora_A.weight"
    header = rebuilt(llama_adapter.header, change={k0_a: ("F32", (4, 48))})
    message = _refusal(llama_adapter.config, header, llama_base)
    assert "module 'model.layers.0.self_attn.k_proj': A (4, 48) and B (32, 4) do not fit" in message


def test_rank_differs_from_config_r(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    config = reconfigured(llama_adapter.config, rank_pattern={r"layers\.1\.mlp\.down_proj": 2})
    message = _refusal(config, llama_adapter.header, llama_base)
    assert f"module '{Q0}' has rank 8" in message
    assert "gives it rank 4 (r; no rank_pattern key matches it)" in message
    assert "(2 problems)" in message  # both q_proj modules


def test_rank_differs_from_rank_pattern(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    config = reconfigured(llama_adapter.config, rank_pattern={"q_proj": 8, r"layers\.1\.mlp\.down_proj": 3})
    message = _refusal(config, llama_adapter.header, llama_base)
    assert "module 'model.layers.1.mlp.down_proj' has rank 2" in message
    assert "gives it rank 3 (rank_pattern['layers\\\\.1\\\\.mlp\\\\.down_proj'])" in message


def test_a_and_b_ranks_disagree(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    header = rebuilt(llama_adapter.header, change={Q0_B: ("F32", (64, 5))})
    message = _refusal(llama_adapter.config, header, llama_base)
    assert f"module '{Q0}': A '{Q0_A}' (8, 64) has rank 8 but B '{Q0_B}' (64, 5) has rank 5" in message


@pytest.mark.parametrize("dropped", ["A", "B"])
def test_orphan_tensor(dropped: str, llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    gone, kept = (Q0_A, Q0_B) if dropped == "A" else (Q0_B, Q0_A)
    header = rebuilt(llama_adapter.header, drop=[gone])
    message = _refusal(llama_adapter.config, header, llama_base)
    assert f"orphan tensor '{kept}': '{gone}' missing" in message


def test_target_module_missing_from_base(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    weights = dict(llama_base.weights)
    del weights[f"{Q0}.weight"]
    message = _refusal(
        llama_adapter.config, llama_adapter.header, dataclasses.replace(llama_base, weights=weights)
    )
    assert f"module '{Q0}' is not in the base model: it has no weight '{Q0}.weight'" in message
    assert "'model.layers.1.self_attn.q_proj.weight'" in message  # a hint of what the base has


def test_adapter_for_another_base(gpt2_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    message = _refusal(gpt2_adapter.config, gpt2_adapter.header, llama_base)
    assert "module 'transformer.h.0.attn.c_attn' is not in the base model" in message
    assert "(4 problems)" in message


def test_ambiguous_suffix_match(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    weights = dict(llama_base.weights)
    del weights[f"{Q0}.weight"]
    weights[f"vision.{Q0}.weight"] = weights[f"text.{Q0}.weight"] = WeightShape((64, 64), "F32")
    base = dataclasses.replace(llama_base, weights=weights)
    message = _refusal(llama_adapter.config, llama_adapter.header, base)
    assert (
        f"module '{Q0}' matches several base weights by suffix ('text.{Q0}.weight', 'vision.{Q0}.weight')"
        in message
    )
    assert "(1 problems)" not in message and message.count("module '") == 1


@pytest.mark.parametrize("dtype", ["BOOL", "C64", "F8_E8M0", "U16", "U64"])
def test_dtype_peft_cannot_load(llama_adapter: SavedAdapter, llama_base: BaseManifest, dtype: str) -> None:
    header = rebuilt(llama_adapter.header, change={Q0_A: (dtype, (8, 64))})
    message = _refusal(llama_adapter.config, header, llama_base)
    assert f"tensor '{Q0_A}' has dtype {dtype}, which PEFT cannot load" in message


@pytest.mark.parametrize("dtype", ["I8", "U8", "I16", "I32", "I64", "F8_E4M3", "F8_E5M2"])
def test_integer_and_fp8_dtypes_pass(
    llama_adapter: SavedAdapter, llama_base: BaseManifest, dtype: str
) -> None:
    header = rebuilt(llama_adapter.header, change={Q0_A: (dtype, (8, 64))})
    assert len(check_adapter(llama_adapter.config, header, llama_base)) == 14


def test_half_precision_dtypes_pass(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    header = rebuilt(llama_adapter.header, change={Q0_A: ("BF16", (8, 64)), Q0_B: ("F16", (64, 8))})
    assert len(check_adapter(llama_adapter.config, header, llama_base)) == 14


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (f"{P}model.norm.weight", "nor a weight of a module in modules_to_save (none)"),
        (f"{P}{Q0}.lora_magnitude_vector", "DoRA"),
        (f"{P}{Q0}.lora_A.default.weight", "neither a LoRA tensor"),
        ("model.layers.0.self_attn.q_proj.lora_A.weight", "PEFT adapter keys start with 'base_model.model.'"),
        (f"{P}model.layers.0.self_attn.o_proj.bias", "biases are only allowed as lora_B.bias"),
    ],
)
def test_unexpected_tensor(
    extra: str, why: str, llama_adapter: SavedAdapter, llama_base: BaseManifest
) -> None:
    header = rebuilt(llama_adapter.header, add={extra: ("F32", (64,))})
    message = _refusal(llama_adapter.config, header, llama_base)
    assert f"unexpected tensor '{extra}'" in message and why in message


def test_lora_bias_without_config_flag(gpt2_adapter: SavedAdapter, gpt2_base: BaseManifest) -> None:
    config = reconfigured(gpt2_adapter.config, lora_bias=False)
    message = _refusal(config, gpt2_adapter.header, gpt2_base)
    assert f"unexpected tensor '{P}transformer.h.0.attn.c_attn.lora_B.bias'" in message
    assert "lora_bias=false" in message


def test_lora_bias_missing_or_wrong_shape(gpt2_adapter: SavedAdapter, gpt2_base: BaseManifest) -> None:
    bias = f"{P}transformer.h.0.attn.c_attn.lora_B.bias"
    message = _refusal(gpt2_adapter.config, rebuilt(gpt2_adapter.header, drop=[bias]), gpt2_base)
    assert f"module 'transformer.h.0.attn.c_attn' lacks '{bias}'" in message
    message = _refusal(
        gpt2_adapter.config, rebuilt(gpt2_adapter.header, change={bias: ("F32", (32,))}), gpt2_base
    )
    assert (
        f"tensor '{bias}' has shape (32,) but module 'transformer.h.0.attn.c_attn' has 96 outputs" in message
    )


def test_non_2d_lora_tensor(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    header = rebuilt(llama_adapter.header, change={Q0_A: ("F32", (8, 64, 1, 1))})
    message = _refusal(llama_adapter.config, header, llama_base)
    assert f"tensor '{Q0_A}' has shape (8, 64, 1, 1) (4-D)" in message
    assert "Linear, Conv1D and Embedding" in message


def test_empty_adapter(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    message = _refusal(llama_adapter.config, parse(layout({})), llama_base)
    assert "the adapter has no LoRA tensors" in message


def test_modules_to_save_shape_must_equal_base(
    embedding_adapter: SavedAdapter, llama_base: BaseManifest
) -> None:
    lm_head = f"{P}lm_head.weight"
    header = rebuilt(embedding_adapter.header, change={lm_head: ("F32", (128, 65))})
    message = _refusal(embedding_adapter.config, header, llama_base)
    assert (
        f"tensor '{lm_head}' (128, 65) (modules_to_save) must have the shape of base weight 'lm_head.weight'"
        in message
    )


def test_modules_to_save_with_a_resized_vocabulary_is_reported(
    embedding_adapter: SavedAdapter, llama_base: BaseManifest
) -> None:
    lm_head = f"{P}lm_head.weight"
    header = rebuilt(embedding_adapter.header, change={lm_head: ("F32", (130, 64))})
    found = check(embedding_adapter.config, header, llama_base)
    (saved,) = found.saved
    assert (saved.name, saved.shape, saved.base_shape, saved.resized) == (
        "lm_head",
        (130, 64),
        (128, 64),
        True,
    )
    assert found.summary()["resized"] == ["lm_head"]


def test_modules_to_save_not_in_config(embedding_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    config = reconfigured(embedding_adapter.config, modules_to_save=None)
    message = _refusal(config, embedding_adapter.header, llama_base)
    assert f"unexpected tensor '{P}lm_head.weight'" in message


def test_embedding_base_copy_with_resized_vocab(
    embedding_adapter: SavedAdapter, llama_base: BaseManifest
) -> None:
    copy = f"{P}model.embed_tokens.base_layer.weight"
    header = rebuilt(embedding_adapter.header, change={copy: ("F32", (130, 64))})
    message = _refusal(embedding_adapter.config, header, llama_base)
    assert f"tensor '{copy}' (130, 64) is a copy of base weight 'model.embed_tokens.weight'" in message


def test_embedding_lora_wrong_vocab(embedding_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    a = f"{P}model.embed_tokens.lora_embedding_A"
    header = rebuilt(embedding_adapter.header, change={a: ("F32", (4, 100))})
    message = _refusal(embedding_adapter.config, header, llama_base)
    assert "module 'model.embed_tokens': A (4, 100) and B (64, 4) do not fit base weight" in message
    assert "(num_embeddings, embedding_dim): A must be (4, 128)" in message


def test_every_problem_is_reported(llama_adapter: SavedAdapter, llama_base: BaseManifest) -> None:
    header = rebuilt(
        llama_adapter.header,
        drop=[Q0_B],
        change={f"{P}model.layers.1.mlp.up_proj.lora_A.weight": ("BOOL", (4, 64))},
    )
    config = parse_adapter_config(b'{"peft_type": "LORA", "r": 4}')  # no rank_pattern: q_proj (rank 8) is off
    message = _refusal(config, header, llama_base)
    assert message.startswith("Invalid LoRA adapter (")
    assert "orphan tensor" in message and "dtype BOOL" in message and "has rank 8" in message
