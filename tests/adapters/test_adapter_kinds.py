"""check() on real PEFT adapters of every kind (DoRA, modules_to_save, LoHa, LoKr, IA3, VeRA, AdaLoRA), and
one refusal per kind-specific rule."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from peft import AdaLoraConfig, IA3Config, LoHaConfig, LoKrConfig, LoraConfig, VeraConfig, get_peft_model

from registry.adapters.base_manifest import BaseManifest
from registry.adapters.compatibility import check
from registry.adapters.config import parse_adapter_config
from registry.adapters.safetensors_header import parse_header_file
from registry.errors import InvalidAdapter

from .conftest import llama_model, quiet
from .hostile import rebuilt

P = "base_model.model."
Q0 = "model.layers.0.self_attn.q_proj"
KINDS: dict[str, Any] = {
    "dora": LoraConfig(r=4, target_modules=["q_proj", "k_proj"], use_dora=True),
    "modules_to_save": LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]),
    "loha": LoHaConfig(r=4, target_modules=["q_proj", "k_proj"]),
    "lokr": LoKrConfig(r=4, target_modules=["q_proj"]),
    "ia3": IA3Config(target_modules=["q_proj", "down_proj"], feedforward_modules=["down_proj"]),
    "vera": VeraConfig(r=4, target_modules=["q_proj", "k_proj"]),
    "adalora": AdaLoraConfig(init_r=4, target_r=2, target_modules=["q_proj"], total_step=10),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    model = llama_model()
    made = {}
    for kind, config in KINDS.items():
        path = tmp_path_factory.mktemp(kind)
        with quiet():
            get_peft_model(copy.deepcopy(model), copy.deepcopy(config)).save_pretrained(path)
        made[kind] = path
    return made


def _check(path: Path, base: BaseManifest, header: Any = None) -> Any:
    config = parse_adapter_config((path / "adapter_config.json").read_bytes())
    return check(config, header or parse_header_file(path / "adapter_model.safetensors"), base)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_real_peft_adapters_pass(saved: dict[str, Path], llama_base: BaseManifest, kind: str) -> None:
    found = _check(saved[kind], llama_base)
    assert found.modules and all(m.base_weight == f"{m.name}.weight" for m in found.modules)
    assert found.peft_type == KINDS[kind].peft_type.value


def test_dora_modules_are_marked(saved: dict[str, Path], llama_base: BaseManifest) -> None:
    found = _check(saved["dora"], llama_base)
    assert all(m.dora for m in found.modules) and found.summary()["use_dora"] is True


def _refused(path: Path, base: BaseManifest, header: Any) -> str:
    with pytest.raises(InvalidAdapter) as caught:
        _check(path, base, header)
    return caught.value.message


@pytest.mark.parametrize(
    ("kind", "key", "shape", "fragment"),
    [
        ("dora", f"{Q0}.lora_magnitude_vector", (32,), "a DoRA magnitude vector is (64,)"),
        ("loha", f"{Q0}.hada_w1_a", (64, 3), "LOHA tensors"),
        ("lokr", f"{Q0}.lokr_w1", (8, 4), "kron(lokr_w1, lokr_w2) must be (64, 64)"),
        ("ia3", f"{Q0}.ia3_l", (1, 32), "ia3_l must be (64, 1)"),
        ("vera", f"{Q0}.vera_lambda_b", (32,), "vera_lambda_b must be (64,)"),
        ("adalora", f"{Q0}.lora_E", (4, 2), "lora_E (r, 1)"),
    ],
)
def test_shapes_that_do_not_fit_the_base(
    saved: dict[str, Path],
    llama_base: BaseManifest,
    kind: str,
    key: str,
    shape: tuple[int, ...],
    fragment: str,
) -> None:
    header = rebuilt(
        parse_header_file(saved[kind] / "adapter_model.safetensors"), change={P + key: ("F32", shape)}
    )
    assert fragment in _refused(saved[kind], llama_base, header)


def test_dora_magnitude_without_use_dora(
    saved: dict[str, Path], llama_base: BaseManifest, tmp_path: Path
) -> None:
    config = (
        (saved["dora"] / "adapter_config.json").read_text().replace('"use_dora": true', '"use_dora": false')
    )
    (tmp_path / "adapter_config.json").write_text(config)
    header = parse_header_file(saved["dora"] / "adapter_model.safetensors")
    assert "use_dora=false" in _refused(tmp_path, llama_base, header)


def test_unknown_tensor_in_another_type(saved: dict[str, Path], llama_base: BaseManifest) -> None:
    header = rebuilt(
        parse_header_file(saved["ia3"] / "adapter_model.safetensors"),
        add={f"{P}{Q0}.lora_A.weight": ("F32", (4, 64))},
    )
    assert "a IA3 adapter holds" in _refused(saved["ia3"], llama_base, header)
