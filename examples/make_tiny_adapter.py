"""Make a tiny Llama base model and a PEFT LoRA adapter for it, locally, with no downloads.

    python examples/make_tiny_adapter.py ./demo

writes ``./demo/base`` (a 2-layer Llama in safetensors) and ``./demo/adapter`` (a LoRA adapter on its
attention and MLP projections), ready for::

    lorareg base register ./demo/base --name tiny-llama
    lorareg push ./demo/adapter acme/tiny-bot:v1 --base tiny-llama@<content sha printed above>
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the base is local; never look it up on the Hub

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def make_base(
    directory: Path, *, seed: int = 0, hidden: int = 64, layers: int = 2, max_shard_size: str | None = None
) -> LlamaForCausalLM:
    """Save a tiny random Llama to ``directory`` (sharded when ``max_shard_size`` is given)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).eval()
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, safe_serialization=True, **kwargs)
    return model


def make_adapter(
    base: LlamaForCausalLM,
    directory: Path,
    *,
    seed: int = 1,
    r: int = 8,
    targets: Sequence[str] = LLAMA_TARGETS,
    base_name: str = "tiny-llama",
    **lora_options: object,
) -> PeftModel:
    """Save a LoRA adapter with random (non-zero) A and B for ``base`` to ``directory``."""
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), **lora_options)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.normal_(std=0.05)
    model.peft_config["default"].base_model_name_or_path = base_name
    model.save_pretrained(directory)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="where to write base/ and adapter/")
    args = parser.parse_args()
    base = make_base(args.directory / "base")
    make_adapter(base, args.directory / "adapter")
    print(f"wrote {args.directory / 'base'} and {args.directory / 'adapter'}")


if __name__ == "__main__":
    main()
