"""Session-scoped real files: tiny Llama and GPT-2 bases (single file and sharded) and PEFT adapters."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from registry.adapters.base_manifest import BaseManifest, read_base_manifest
from registry.adapters.config import LoraConfig, parse_adapter_config
from registry.adapters.safetensors_header import SafetensorsHeader, parse_header_file

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@contextmanager
def quiet() -> Iterator[None]:
    """transformers/peft warn a lot while building tiny models; pytest turns warnings into errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def llama_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    )
    with quiet():
        return LlamaForCausalLM(config)


def gpt2_model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    with quiet():
        return GPT2LMHeadModel(config)


@dataclass(frozen=True)
class SavedAdapter:
    path: Path
    model: PeftModel  # the PEFT model the adapter was saved from: the oracle for ranks and scalings

    @property
    def config(self) -> LoraConfig:
        return parse_adapter_config((self.path / "adapter_config.json").read_bytes())

    @property
    def header(self) -> SafetensorsHeader:
        return parse_header_file(self.path / "adapter_model.safetensors")


def reconfigured(config: LoraConfig, **changes: Any) -> LoraConfig:
    """``config`` with fields of its adapter_config.json changed (None removes a field)."""
    raw = {**config.raw, **changes}
    raw = {key: value for key, value in raw.items() if value is not None}
    return parse_adapter_config(json.dumps(raw).encode())


def _save_base(tmp_path_factory: pytest.TempPathFactory, name: str, model: Any, **kwargs: Any) -> Path:
    path = tmp_path_factory.mktemp(name)
    with quiet():
        model.save_pretrained(path, safe_serialization=True, **kwargs)
    return path


def _save_adapter(
    tmp_path_factory: pytest.TempPathFactory, name: str, model: Any, **lora: Any
) -> SavedAdapter:
    path = tmp_path_factory.mktemp(name)
    with quiet():
        peft_model = get_peft_model(model, PeftLoraConfig(**lora))
        peft_model.save_pretrained(path)
    return SavedAdapter(path, peft_model)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_base(tmp_path_factory, "llama", llama_model())


@pytest.fixture(scope="session")
def llama_sharded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_base(tmp_path_factory, "llama-sharded", llama_model(), max_shard_size="100KB")


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_base(tmp_path_factory, "gpt2", gpt2_model())


@pytest.fixture(scope="session")
def llama_base(llama_dir: Path) -> BaseManifest:
    return read_base_manifest(llama_dir)


@pytest.fixture(scope="session")
def gpt2_base(gpt2_dir: Path) -> BaseManifest:
    return read_base_manifest(gpt2_dir)


@pytest.fixture(scope="session")
def llama_adapter(tmp_path_factory: pytest.TempPathFactory) -> SavedAdapter:
    """All linear layers, rank_pattern + alpha_pattern + rsLoRA."""
    return _save_adapter(
        tmp_path_factory,
        "llama-adapter",
        llama_model(),
        r=4,
        lora_alpha=16,
        target_modules=LLAMA_TARGETS,
        rank_pattern={"q_proj": 8, r"layers\.1\.mlp\.down_proj": 2},
        alpha_pattern={"v_proj": 32, "model.layers.0.mlp.up_proj": 4},
        use_rslora=True,
    )


@pytest.fixture(scope="session")
def embedding_adapter(tmp_path_factory: pytest.TempPathFactory) -> SavedAdapter:
    """LoRA on embed_tokens (PEFT also saves its base_layer copy) and q_proj, lm_head in modules_to_save."""
    return _save_adapter(
        tmp_path_factory,
        "embedding-adapter",
        llama_model(),
        r=4,
        lora_alpha=8,
        target_modules=["embed_tokens", "q_proj"],
        alpha_pattern={"embed_tokens": 2},
        modules_to_save=["lm_head"],
    )


@pytest.fixture(scope="session")
def gpt2_adapter(tmp_path_factory: pytest.TempPathFactory) -> SavedAdapter:
    """GPT-2 Conv1D layers (fan_in_fan_out) with lora_bias and a rank_pattern."""
    return _save_adapter(
        tmp_path_factory,
        "gpt2-adapter",
        gpt2_model(),
        r=4,
        lora_alpha=8,
        target_modules=["c_attn", "c_fc"],
        fan_in_fan_out=True,
        lora_bias=True,
        rank_pattern={"c_fc": 2},
    )
