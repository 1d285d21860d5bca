"""Make a tiny Llama base model and a PEFT LoRA adapter for it, locally, with no downloads.

    python examples/make_tiny_adapter.py ./demo

writes ``./demo/base`` (a 2-layer Llama in safetensors) and ``./demo/adapter`` (a LoRA adapter on its
attention and MLP projections), ready for::

    lorareg base register ./demo/base --name tiny-llama
    lorareg push ./demo/adapter acme/tiny-bot:v1 --base tiny-llama@<content sha printed above>

The base is the same, byte for byte, on every run (so it has the same SHA); ``--seed`` (and ``--rank``,
``--targets``) make another adapter for it, to diff or merge with the first::

    python examples/make_tiny_adapter.py ./demo2 --seed 2 --rank 4 --targets q_proj,v_proj
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
    parser.add_argument("--seed", type=int, default=1, help="the adapter's random seed (default 1)")
    parser.add_argument("--rank", type=_positive, default=8, help="the LoRA rank r (default 8)")
    parser.add_argument(
        "--targets",
        type=_targets,
        default=LLAMA_TARGETS,
        help=f"comma-separated modules to adapt (default all: {','.join(LLAMA_TARGETS)})",
    )
    args = parser.parse_args()
    base = make_base(args.directory / "base")
    make_adapter(base, args.directory / "adapter", seed=args.seed, r=args.rank, targets=args.targets)
    print(
        f"wrote {args.directory / 'base'} (the same base on every run) and {args.directory / 'adapter'} "
        f"(seed {args.seed}, r={args.rank}, {','.join(args.targets)})"
    )


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer")
    return int(value)


def _targets(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(set(names) - set(LLAMA_TARGETS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown modules {', '.join(unknown) or '(none given)'}; pick from {','.join(LLAMA_TARGETS)}"
        )
    return names


if __name__ == "__main__":
    main()
