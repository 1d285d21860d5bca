"""parse_adapter_config and PEFT's rank/alpha pattern semantics."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from peft.utils.other import get_pattern_key

from registry.adapters.config import LoraConfig, parse_adapter_config, pattern_key
from registry.errors import InvalidAdapter

from .conftest import SavedAdapter


def _config(**fields: Any) -> LoraConfig:
    return parse_adapter_config(
        json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, **fields}).encode()
    )


def test_real_peft_config_is_parsed(llama_adapter: SavedAdapter) -> None:
    raw_bytes = (llama_adapter.path / "adapter_config.json").read_bytes()
    config = parse_adapter_config(raw_bytes)
    assert config.peft_type == "LORA"
    assert (config.r, config.lora_alpha, config.use_rslora) == (4, 16, True)
    assert config.rank_pattern == {"q_proj": 8, r"layers\.1\.mlp\.down_proj": 2}
    assert config.alpha_pattern == {"v_proj": 32, "model.layers.0.mlp.up_proj": 4}
    assert isinstance(config.target_modules, tuple)
    assert set(config.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert config.fan_in_fan_out is False and config.use_dora is False and config.lora_bias is False
    assert config.modules_to_save is None
    assert config.raw == json.loads(raw_bytes)


def test_optional_fields_and_defaults() -> None:
    config = _config(
        target_modules="model.*(q|v)_proj$",
        modules_to_save=["lm_head"],
        base_model_name_or_path="meta-llama/Llama-3.2-1B",
        revision="abc123",
        task_type="CAUSAL_LM",
        rank_pattern=None,
    )
    assert config.target_modules == "model.*(q|v)_proj$"
    assert config.modules_to_save == ("lm_head",)
    assert config.base_model_name_or_path == "meta-llama/Llama-3.2-1B"
    assert config.revision == "abc123" and config.task_type == "CAUSAL_LM"
    assert config.rank_pattern == {} and config.alpha_pattern == {}
    minimal = parse_adapter_config(b'{"peft_type": "LORA", "r": 2}')
    assert minimal.lora_alpha == 8  # PEFT's default
    assert minimal.target_modules is None and minimal.base_model_name_or_path is None


MODULES = [
    "model.layers.0.self_attn.q_proj",
    "model.layers.1.self_attn.q_proj",
    "model.layers.10.self_attn.q_proj",
    "model.layers.1.mlp.down_proj",
    "model.layers.0.self_attn.k_proj",
    "transformer.h.0.attn.c_attn",
    "q_proj",
    "model.embed_tokens",
]
PATTERNS = [
    {"q_proj": 1},
    {"proj": 1},  # no dot boundary: must NOT match "q_proj" (PEFT needs "(.*\.)?" before the key)
    {r"layers\.1\..*": 1},
    {"layers.1.self_attn.q_proj": 1, "q_proj": 2},  # first match wins, in file order
    {"q_proj": 2, "layers.1.self_attn.q_proj": 1},
    {"model.layers.0.self_attn.q_proj": 1},
    {"self_attn.(q|k)_proj": 1},
    {".*_proj": 1},
    {"c_attn|embed_tokens": 1},
]


@pytest.mark.parametrize("patterns", PATTERNS, ids=[",".join(p) for p in PATTERNS])
def test_pattern_key_is_peft_get_pattern_key(patterns: dict[str, int]) -> None:
    for module in MODULES:
        peft_key = get_pattern_key(list(patterns), module)
        ours = pattern_key(patterns, module)
        assert (ours if ours is not None else module) == peft_key, module


def test_rank_and_alpha_per_module() -> None:
    config = _config(
        rank_pattern={"q_proj": 4, r"layers\.1\.mlp\..*": 2}, alpha_pattern={"mlp.down_proj": 3.5}
    )
    assert config.rank_for("model.layers.0.self_attn.q_proj") == 4
    assert config.rank_for("model.layers.1.mlp.down_proj") == 2
    assert config.rank_for("model.layers.0.mlp.down_proj") == 8
    assert config.rank_for("model.layers.0.self_attn.xq_proj") == 8  # dot boundary
    assert config.alpha_for("model.layers.0.mlp.down_proj") == 3.5
    assert config.alpha_for("model.layers.0.self_attn.q_proj") == 16
    assert config.scaling_for("model.layers.0.self_attn.q_proj") == 16 / 4
    assert config.scaling_for("model.layers.1.mlp.down_proj") == 3.5 / 2


def test_rslora_scaling() -> None:
    config = _config(use_rslora=True, rank_pattern={"q_proj": 4})
    assert config.scaling_for("model.layers.0.self_attn.q_proj") == 16 / math.sqrt(4)
    assert config.scaling_for("model.layers.0.self_attn.v_proj") == 16 / math.sqrt(8)


BAD = [
    (b"\xff\xfe not utf8", "not UTF-8"),
    (b"{oops", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object, got list"),
    (b'{"r": 8}', "peft_type is missing"),
    (b'{"peft_type": "BOFT", "r": 8}', "peft_type is 'BOFT'; the registry takes LoRA adapters"),
    (b'{"peft_type": "PROMPT_TUNING"}', "'PROMPT_TUNING'"),
    (b'{"peft_type": "LOHA", "r": 0}', "r must be a positive integer, got 0"),
    (b'{"peft_type": "LORA"}', "r (the LoRA rank) is missing"),
    (b'{"peft_type": "LORA", "r": 0}', "r must be a positive integer, got 0"),
    (b'{"peft_type": "LORA", "r": -4}', "got -4"),
    (b'{"peft_type": "LORA", "r": "8"}', 'got "8"'),
    (b'{"peft_type": "LORA", "r": true}', "got true"),
    (b'{"peft_type": "LORA", "r": 8.5}', "got 8.5"),
    (b'{"peft_type": "LORA", "r": 8, "lora_alpha": "16"}', 'lora_alpha must be a positive number, got "16"'),
    (b'{"peft_type": "LORA", "r": 8, "lora_alpha": NaN}', "lora_alpha must be a positive number, got NaN"),
    (b'{"peft_type": "LORA", "r": 8, "lora_alpha": 1e400}', "lora_alpha must be a positive number"),
    (b'{"peft_type": "LORA", "r": 8, "rank_pattern": [1]}', "rank_pattern must be an object"),
    (
        b'{"peft_type": "LORA", "r": 8, "rank_pattern": {"q_proj": 0}}',
        "rank_pattern['q_proj'] must be a positive",
    ),
    (
        b'{"peft_type": "LORA", "r": 8, "rank_pattern": {"q_proj": 2.5}}',
        "must be a positive integer, got 2.5",
    ),
    (b'{"peft_type": "LORA", "r": 8, "rank_pattern": {"q_(proj": 2}}', "not a valid regular expression"),
    (b'{"peft_type": "LORA", "r": 8, "alpha_pattern": {"v_proj": -1}}', "alpha_pattern['v_proj']"),
    (b'{"peft_type": "LORA", "r": 8, "use_dora": 1}', "use_dora must be true or false"),
    (b'{"peft_type": "LORA", "r": 8, "layer_replication": [[0, 2]]}', "layer_replication"),
    (b'{"peft_type": "LORA", "r": 8, "target_parameters": ["experts.down_proj"]}', "target_parameters"),
    (b'{"peft_type": "LORA", "r": 8, "trainable_token_indices": [1, 2]}', "trainable_token_indices"),
    (b'{"peft_type": "LORA", "r": 8, "target_modules": 5}', "target_modules must be a list"),
    (b'{"peft_type": "LORA", "r": 8, "modules_to_save": "lm_head"}', "modules_to_save must be a list"),
    (b'{"peft_type": "LORA", "r": 8, "use_rslora": "yes"}', 'use_rslora must be true or false, got "yes"'),
    (b'{"peft_type": "LORA", "r": 8, "revision": 3}', "revision must be a string or null"),
]


@pytest.mark.parametrize(("data", "fragment"), BAD, ids=[fragment for _, fragment in BAD])
def test_invalid_configs_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidAdapter) as caught:
        parse_adapter_config(data)
    assert fragment in caught.value.message
    assert caught.value.message.startswith("adapter_config.json")
