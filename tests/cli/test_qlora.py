"""QLoRA through the real CLI and a live server: a bf16 base and its 4-bit NF4 quantization registered as a
pair, a PEFT adapter made on the 4-bit model pushed for either, resolved against either (saying which it
was trained on), pulled and loaded (logits equal), and merge-base into the bf16 base equal to PEFT's
merge_and_unload (the seeds' recipe) and into the 4-bit base (dequantize, merge, requantize) too."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from registry.adapters.base_manifest import read_base_manifest
from tests.cli.test_cli import logits, run, run_json
from tests.conftest import LiveServer, TinyBase
from tests.quantized_models import FULL_NAME, load_quantized, make_pair, make_qlora

pytest.importorskip("bitsandbytes")
QUANTIZED_NAME = "tiny-llama-nf4"


def test_qlora_push_resolve_pull_load_merge_base(
    server: LiveServer, tiny_base: TinyBase, repo: str, tmp_path: Path
) -> None:
    pair = make_pair(tmp_path / "bases", "nf4")
    full_digest = read_base_manifest(pair.full).content_digest
    quantized_digest = read_base_manifest(pair.quantized).content_digest
    run(server, "base", "register", str(pair.full), "--name", FULL_NAME, "--with-weights")
    registered = run_json(
        server, "base", "register", str(pair.quantized), "--name", QUANTIZED_NAME, "--with-weights"
    )  # linked from README.md's base_model_relation: quantized
    assert registered["quantization"] == "bnb-nf4"
    assert registered["quantized_from"]["content_digest"] == full_digest
    assert "quantized_from" in registered["added"]
    shown = run(server, "base", "show", QUANTIZED_NAME).stdout
    assert f"quantized from: {FULL_NAME}@{full_digest}" in shown
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")  # same shapes, unlinked

    adapter = make_qlora(pair, tmp_path / "adapter", name=QUANTIZED_NAME)
    run(server, "push", str(adapter), f"{repo}:v1")  # its config names the 4-bit base
    run(server, "push", str(adapter), f"{repo}-full:v1", "--base", FULL_NAME)
    for pushed, digest in ((repo, quantized_digest), (f"{repo}-full", full_digest)):
        version = server.http.get(f"/api/v1/repos/{pushed}/resolve/v1").json()
        assert version["base"]["content_digest"] == digest and version["trained_on"] == "quantized"

    for pushed in (repo, f"{repo}-full"):
        for base in (full_digest, quantized_digest[:12], QUANTIZED_NAME):
            resolved = server.http.get(f"/api/v1/repos/{pushed}/resolve/v1", params={"base": base})
            assert resolved.status_code == 200, resolved.text
            assert resolved.json()["trained_on"] == "quantized"
        other = server.http.get(
            f"/api/v1/repos/{pushed}/resolve/v1", params={"base": tiny_base.content_digest}
        )
        assert other.status_code == 409, other.text
    namespace = repo.split("/")[0]
    for fleet, base in (
        (f"{namespace}/qlora-on-full", FULL_NAME),
        (f"{namespace}/qlora-on-nf4", QUANTIZED_NAME),
    ):
        run(server, "deploy", "create", fleet, "--base", base)
        assert run_json(server, "deploy", "add", fleet, f"{repo}:v1")["status"] == "applied"
    run(server, "deploy", "create", f"{namespace}/unlinked", "--base", "tiny-llama")
    unlinked = run(server, "deploy", "add", f"{namespace}/unlinked", f"{repo}:v1", check=1)
    assert "not for" in unlinked.stderr and "tiny-llama" in unlinked.stderr

    pulled = tmp_path / "pulled"
    run(server, "pull", f"{repo}:v1", "-o", str(pulled), "--base", full_digest)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (pulled / name).read_bytes() == (adapter / name).read_bytes()
    full_model = AutoModelForCausalLM.from_pretrained(pair.full, dtype=torch.bfloat16).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for base_model in (lambda: copy.deepcopy(full_model), lambda: load_quantized(pair.quantized, "nf4")):
            original = PeftModel.from_pretrained(base_model(), str(adapter)).eval()
            loaded = PeftModel.from_pretrained(base_model(), str(pulled)).eval()
            assert torch.equal(logits(original), logits(loaded))

    made = run_json(server, "merge-base", f"{repo}-full:v1", "--into", f"{repo}-model:v1")
    assert made["status"] == "succeeded", made
    out = tmp_path / "model"
    run(server, "pull", f"{repo}-model:v1", "-o", str(out))
    ours = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).eval()
    reference = PeftModel.from_pretrained(copy.deepcopy(full_model), str(adapter)).merge_and_unload().eval()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), name
    assert torch.equal(logits(ours), logits(reference))

    made = run_json(server, "merge-base", f"{repo}:v1", "--into", f"{repo}-model4:v1")
    assert made["status"] == "succeeded", made
    out4 = tmp_path / "model4"
    run(server, "pull", f"{repo}-model4:v1", "-o", str(out4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours4 = load_quantized(out4, "nf4")
        reference4 = PeftModel.from_pretrained(load_quantized(pair.quantized, "nf4"), str(adapter))
        reference4 = reference4.merge_and_unload().eval()
    assert torch.allclose(logits(ours4), logits(reference4), atol=1e-4)


def test_quantized_from_refuses_a_base_of_other_shapes(
    server: LiveServer, other_base: TinyBase, tmp_path: Path
) -> None:
    pair = make_pair(tmp_path / "bases", "nf4", card=False, seed=5)
    run(server, "base", "register", str(other_base.path), "--name", "other-llama")
    refused = run(
        server,
        "base",
        "register",
        str(pair.quantized),
        "--name",
        "q",
        "--quantized-from",
        "other-llama",
        check=1,
    )
    assert "cannot be a quantization of other-llama" in refused.stderr
    refused = run(
        server, "base", "register", str(pair.full), "--name", "f", "--quantized-from", "other-llama", check=1
    )
    assert "has no bitsandbytes-quantized weights" in refused.stderr
