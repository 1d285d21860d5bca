"""Make a tiny Llama that vLLM can serve, and LoRA adapters for it, on the spot, with no downloads.

    python bench/gpu/make_tiny_llama.py OUT [--adapters 2] [--check]

writes ``OUT/base`` (a random 2-layer Llama in safetensors, with a word-level tokenizer built here
with the ``tokenizers`` library: ``tokenizer.json``, ``tokenizer_config.json``) and ``OUT/adapter-1``,
``OUT/adapter-2``, … (PEFT LoRA adapters of rank 8 on every attention and MLP projection, each with its
own random A and B), and prints a JSON summary (paths, vocabulary size, the prompt). ``--check``
loads the base and each adapter back with transformers and PEFT, decodes the prompt greedily (as a
server does at temperature 0, EOS ignored), and fails unless the base and every adapter give
pairwise different completions, in float32 and in bfloat16 (what ``bench/gpu/vllm_e2e.sh`` serves).
Every run writes the same bytes, so the base and the adapters keep their digests.

The shapes suit vLLM: head size 64 (its attention backends take multiples of 32 up to 256), LoRA
rank 8 (one of vLLM's ``--max-lora-rank`` choices), a vocabulary far under vLLM's LoRA limit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never look anything up on the Hub

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

BASE_NAME = "tiny-llama-e2e"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SPECIALS = ("<unk>", "<s>", "</s>")
PROMPT = "ba ke mi no su ra te"
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def words() -> list[str]:
    """The vocabulary's words: every one- and two-syllable consonant+vowel word (4,970), in order."""
    syllables = [c + v for c, v in itertools.product(CONSONANTS, VOWELS)]
    return syllables + [a + b for a, b in itertools.product(syllables, repeat=2)]


def make_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words()``, saved as a fast tokenizer that AutoTokenizer loads."""
    vocab = {token: i for i, token in enumerate([*SPECIALS, *words()])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(directory)
    # transformers 5 writes its own class name (TokenizersBackend), which transformers 4 (what a vLLM
    # release may pin) cannot load; both load the class this names.
    config_file = directory / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    return tokenizer


def make_base(directory: Path, *, seed: int = 0, hidden: int = 256, layers: int = 2) -> LlamaForCausalLM:
    """A random Llama (float32 safetensors) and its tokenizer in ``directory``, the same on every run."""
    tokenizer = make_tokenizer(directory)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=512,
        initializer_range=0.1,  # far from uniform logits, so greedy decoding is not a coin toss
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return model


def make_adapter(base: LlamaForCausalLM, directory: Path, *, seed: int, r: int = 8, std: float = 0.1) -> None:
    """A LoRA adapter with random (seeded) A and B for ``base`` in ``directory``; ``base`` stays as it was."""
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(TARGETS), lora_dropout=0.0)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.normal_(std=std)
    model.peft_config["default"].base_model_name_or_path = BASE_NAME
    model.peft_config["default"].target_modules = sorted(TARGETS)  # a set: its order varies by process
    model.save_pretrained(directory, save_embedding_layers=False)
    model.unload()  # take the LoRA layers out again, so the next adapter starts from the plain base


def greedy(model: Any, tokenizer: Any, prompt: str, max_tokens: int) -> str:
    """What a server answers at temperature 0 with EOS ignored: argmax, ``max_tokens`` times."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = model(input_ids=ids).logits[:, -1, :]
            ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return str(tokenizer.decode(ids[0, -max_tokens:], skip_special_tokens=True))


def completions(
    base_dir: Path, adapters: Sequence[Path], prompt: str, max_tokens: int, dtype: torch.dtype
) -> list[str]:
    """The greedy completions of the base, then of each adapter, loaded back from disk."""
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir).to(dtype).eval()
    found = [greedy(base, tokenizer, prompt, max_tokens)]
    for adapter in adapters:
        model = PeftModel.from_pretrained(base, adapter).eval()
        found.append(greedy(model, tokenizer, prompt, max_tokens))
        base = model.unload()
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="where to write base/ and adapter-N/")
    parser.add_argument("--adapters", type=int, default=2, help="how many adapters (default 2)")
    parser.add_argument("--prompt", default=PROMPT, help=f"the prompt --check decodes (default {PROMPT!r})")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens --check decodes (default 8)")
    parser.add_argument("--check", action="store_true", help="fail unless every completion differs")
    args = parser.parse_args(argv)

    base_dir = args.directory / "base"
    base = make_base(base_dir)
    adapters = [args.directory / f"adapter-{i}" for i in range(1, args.adapters + 1)]
    for seed, adapter in enumerate(adapters, start=1):
        make_adapter(base, adapter, seed=seed)
    summary: dict[str, Any] = {
        "base": str(base_dir),
        "base_name": BASE_NAME,
        "adapters": [str(a) for a in adapters],
        "vocab_size": base.config.vocab_size,
        "prompt": args.prompt,
    }
    failed = False
    if args.check:
        summary["completions"] = {}
        for label, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            found = completions(base_dir, adapters, args.prompt, args.max_tokens, dtype)
            summary["completions"][label] = found
            if len(set(found)) != len(found):
                failed = True
                print(f"FAIL {label}: the base and the adapters do not all differ: {found}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
