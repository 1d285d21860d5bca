"""Every adapter kind through the real CLI and a live server: push → pull (bytes equal) → PEFT load (logits
equal) → merge-base (equals PEFT's merge_and_unload) where PEFT can merge it, else a clear refusal."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import AdaLoraConfig, IA3Config, LoHaConfig, LoKrConfig, LoraConfig, PeftModel, VeraConfig
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from tests.cli.test_cli import logits, run, run_json
from tests.compute.test_adapter_kinds import make
from tests.conftest import LiveServer, TinyBase

MERGEABLE: dict[str, Any] = {
    "dora": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True),
    "modules_to_save": LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]),
    "ia3": IA3Config(target_modules=["q_proj", "down_proj"], feedforward_modules=["down_proj"]),
    "loha": LoHaConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
    "int8": LoraConfig(r=4, target_modules=["q_proj"]),
}
STORED_ONLY: dict[str, Any] = {
    "lokr": LoKrConfig(r=4, target_modules=["q_proj"]),
    "vera": VeraConfig(r=4, target_modules=["q_proj", "k_proj"]),
    "adalora": AdaLoraConfig(init_r=4, target_r=2, target_modules=["q_proj"], total_step=10),
}


def _adapter(tiny_base: TinyBase, directory: Path, kind: str, config: Any) -> Path:
    make(tiny_base.model, directory, copy.deepcopy(config), seed=7)
    if kind == "int8":
        path = directory / "adapter_model.safetensors"
        save_file({k: (v * 100).to(torch.int8) for k, v in load_file(path).items()}, path)
    return directory


def _push_pull_load(
    server: LiveServer, tiny_base: TinyBase, adapter: Path, repo: str, tmp_path: Path
) -> dict[str, Any]:
    pushed = run_json(server, "push", str(adapter), f"{repo}:v1", "--base", tiny_base.content_digest)
    assert pushed["created"] is True
    out = tmp_path / "pulled"
    run(server, "pull", f"{repo}:v1", "-o", str(out), "--base", tiny_base.content_digest)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (out / name).read_bytes() == (adapter / name).read_bytes()
    original = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(adapter)).eval()
    loaded = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(out)).eval()
    assert torch.equal(logits(original), logits(loaded))
    return pushed


@pytest.mark.parametrize("kind", sorted(MERGEABLE))
def test_push_pull_load_merge_base(
    server: LiveServer, tiny_base: TinyBase, repo: str, tmp_path: Path, kind: str
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama", "--with-weights")
    adapter = _adapter(tiny_base, tmp_path / "adapter", kind, MERGEABLE[kind])
    _push_pull_load(server, tiny_base, adapter, repo, tmp_path)

    made = run_json(server, "merge-base", f"{repo}:v1", "--into", f"{repo}-model:v1")
    assert made["status"] == "succeeded", made
    out = tmp_path / "model"
    run(server, "pull", f"{repo}-model:v1", "-o", str(out))
    ours = AutoModelForCausalLM.from_pretrained(out).eval()
    reference = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(adapter))
    expected = reference.merge_and_unload().eval().state_dict()
    for name, tensor in expected.items():
        got = ours.state_dict()[name]
        assert float((got - tensor).abs().max()) <= 1e-5 * max(float(tensor.abs().max()), 1e-30), name
    assert torch.allclose(logits(ours), logits(reference), atol=1e-5)


@pytest.mark.parametrize("kind", sorted(STORED_ONLY))
def test_push_pull_load_and_compute_refuses(
    server: LiveServer, tiny_base: TinyBase, repo: str, tmp_path: Path, kind: str
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama", "--with-weights")
    adapter = _adapter(tiny_base, tmp_path / "adapter", kind, STORED_ONLY[kind])
    _push_pull_load(server, tiny_base, adapter, repo, tmp_path)
    refused = run(server, "merge-base", f"{repo}:v1", "--into", f"{repo}-model:v1", check=1)
    assert (
        f"is a {kind.upper()} adapter; merge-base computes with LORA, IA3, LOHA adapters only"
        in refused.stderr
    )
    jobs = server.http.get("/api/v1/jobs").json()
    assert not [job for job in jobs if repo in json.dumps(job)]  # refused at submit: no job was made


def test_push_refuses_a_dora_magnitude_of_the_wrong_shape(
    server: LiveServer, tiny_base: TinyBase, repo: str, tmp_path: Path
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    adapter = _adapter(tiny_base, tmp_path / "adapter", "dora", MERGEABLE["dora"])
    path = adapter / "adapter_model.safetensors"
    tensors = load_file(path)
    key = next(k for k in tensors if k.endswith("v_proj.lora_magnitude_vector"))
    tensors[key] = torch.ones(64)
    save_file(tensors, path)
    refused = run(server, "push", str(adapter), repo, "--base", tiny_base.content_digest, check=1)
    assert "a DoRA magnitude vector is (32,): one per output" in refused.stderr
    assert server.http.get(f"/api/v1/repos/{repo}").status_code == 404
