"""Tiny bases (Llama fp32 single-file and sharded, Llama bf16, GPT-2 with Conv1D) and real PEFT adapters for
them. PEFT itself is the oracle: ``peft_merged`` is ``merge_and_unload()`` of an adapter on its base."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from make_tiny_adapter import LLAMA_TARGETS, make_adapter, make_base
from peft import PeftModel
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

GPT2_TARGETS = ("c_attn", "c_proj", "c_fc")
TOKENS = torch.tensor([[1, 5, 9, 17, 33, 65, 100, 127, 3, 8, 2, 77]])


@contextmanager
def quiet() -> Iterator[None]:
    """transformers/peft warn a lot about tiny models (tied weights, fan_in_fan_out fixes, no tokenizer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclass
class Base:
    """A saved base model directory, the model object it was saved from (never mutated: copy it first), and
    the LoRA options adapters for it use."""

    path: Path
    model: torch.nn.Module
    dtype: torch.dtype = torch.float32
    targets: tuple[str, ...] = tuple(LLAMA_TARGETS)
    lora_options: dict[str, Any] = field(default_factory=dict)

    def load(self) -> torch.nn.Module:
        with quiet():
            return AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype).eval()


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits.float()


def peft_merged(base: Base, adapter_dir: Path) -> torch.nn.Module:
    """PEFT's ``merge_and_unload()`` of ``adapter_dir`` on a fresh load of ``base``."""
    with quiet():
        return PeftModel.from_pretrained(base.load(), adapter_dir).merge_and_unload().eval()


def peft_with_adapter(base: Base, adapter_dir: Path) -> torch.nn.Module:
    with quiet():
        return PeftModel.from_pretrained(base.load(), adapter_dir).eval()


@pytest.fixture(scope="session")
def llama(tiny_base: Any) -> Base:
    return Base(tiny_base.path, tiny_base.model)


@pytest.fixture(scope="session")
def llama_sharded(tmp_path_factory: pytest.TempPathFactory) -> Base:
    """The same weights as ``tiny_base`` (same seed), saved in four shards with an index."""
    path = tmp_path_factory.mktemp("llama-sharded")
    with quiet():
        model = make_base(path, seed=0, max_shard_size="100KB")
    return Base(path, model)


@pytest.fixture(scope="session")
def llama_bf16(tiny_base: Any, tmp_path_factory: pytest.TempPathFactory) -> Base:
    path = tmp_path_factory.mktemp("llama-bf16")
    model = copy.deepcopy(tiny_base.model).to(torch.bfloat16)
    with quiet():
        model.save_pretrained(path, safe_serialization=True)
    return Base(path, model, dtype=torch.bfloat16)


@pytest.fixture(scope="session")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Base:
    """A tiny GPT-2: Conv1D blocks stored (in, out), so adapters use fan_in_fan_out; lm_head tied to wte."""
    path = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    with quiet():
        model = GPT2LMHeadModel(config).eval()
        model.save_pretrained(path, safe_serialization=True)
    return Base(path, model, targets=GPT2_TARGETS, lora_options={"fan_in_fan_out": True})


@pytest.fixture(scope="session")
def bases(llama: Base, llama_sharded: Base, llama_bf16: Base, gpt2: Base) -> dict[str, Base]:
    return {"llama": llama, "llama_sharded": llama_sharded, "llama_bf16": llama_bf16, "gpt2": gpt2}


@pytest.fixture(scope="session")
def peft_adapter(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``peft_adapter(base, seed=…, r=…, targets=…, **options)`` → a saved PEFT adapter directory (cached),
    with random non-zero A and B, made by ``get_peft_model(...).save_pretrained``."""
    made: dict[tuple[Any, ...], Path] = {}

    def build(
        base: Base, *, seed: int = 1, r: int = 8, targets: tuple[str, ...] | None = None, **options: Any
    ) -> Path:
        targets = tuple(targets or base.targets)
        key = (base.path, seed, r, targets, repr(sorted(options.items())))
        if key not in made:
            path = tmp_path_factory.mktemp(f"peft-{seed}-r{r}")
            with quiet():
                make_adapter(
                    copy.deepcopy(base.model),
                    path,
                    seed=seed,
                    r=r,
                    targets=targets,
                    **{**base.lora_options, **options},
                )
            made[key] = path
        return made[key]

    return build
