"""Tiny bitsandbytes-quantized bases for tests: a bf16 Llama, quantized on CPU by transformers (4-bit NF4
or FP4, or 8-bit) and saved as its ``save_pretrained`` writes them, and QLoRA adapters PEFT made on them."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

FULL_NAME = "tiny-llama-bf16"
QUANT_CONFIGS = {
    "nf4": lambda: BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    ),
    "fp4": lambda: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4"),
    "int8": lambda: BitsAndBytesConfig(load_in_8bit=True),
}


@dataclass(frozen=True)
class Pair:
    full: Path
    quantized: Path
    kind: str


def make_full(directory: Path, *, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return model


def load_quantized(directory: Path, kind: str) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(
            directory, quantization_config=QUANT_CONFIGS[kind](), device_map="cpu", dtype=torch.bfloat16
        ).eval()


def make_pair(root: Path, kind: str = "nf4", *, card: bool = True, seed: int = 0) -> Pair:
    """A bf16 base in ``root/full`` and its ``kind`` quantization in ``root/<kind>``, whose README.md says
    so (``base_model_relation: quantized``) when ``card``."""
    full, quantized = root / "full", root / kind
    make_full(full, seed=seed)
    load_quantized(full, kind).save_pretrained(quantized)
    if card:
        (quantized / "README.md").write_text(
            f"---\nbase_model: {FULL_NAME}\nbase_model_relation: quantized\n---\n# {kind} of {FULL_NAME}\n"
        )
    return Pair(full, quantized, kind)


def make_qlora(pair: Pair, directory: Path, *, name: str, seed: int = 3) -> Path:
    """A LoRA adapter made by PEFT on the quantized model (random B: a trained one), its config naming the
    quantized base ``name`` as an adapter trained on a Hub model does."""
    torch.manual_seed(seed)
    model = get_peft_model(
        load_quantized(pair.quantized, pair.kind),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(directory)
    config_path = directory / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = name
    config_path.write_text(json.dumps(config, indent=2))
    return directory
