"""merge_adapters against PEFT 0.21's add_weighted_adapter, on adapters PEFT made.

PEFT is the oracle: the same adapters are loaded into one PeftModel, merged there, and each LoRA layer's
``get_delta_weight(merged)`` is compared with ours (relative Frobenius ≤ 1e-5 per module, fp32). Where
PEFT is wrong (rsLoRA) we compare with the dense Σ wᵢΔWᵢ instead and assert PEFT's error.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from make_tiny_adapter import make_adapter
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from registry.compute.lora import IncompatibleAdapters, LoraAdapter, LoraModule, load_adapter, save_adapter
from registry.compute.merge import METHODS, MergeResult, dare_mask, mask_generator, merge_adapters

PEFT_METHODS = tuple(m for m in METHODS if m != "sum")
FACTORWISE = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
TOLERANCE = 1e-5


def relative(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    return float(torch.linalg.matrix_norm(x - y) / torch.linalg.matrix_norm(y))


def options_for(method: str) -> dict:
    options: dict = {}
    if method.startswith(("ties", "dare", "magnitude")):
        options["density"] = 0.6
    if method.startswith("dare"):
        options["seed"] = 1234
    if method in ("ties", "dare_ties_svd"):
        options["majority_sign_method"] = "frequency"
    if method in ("ties_svd", "dare_linear_svd"):
        options["svd_rank"] = 6
    return options


@dataclass
class AdapterSet:
    """Adapters of one base: their directories, the base model, and them loaded into one PeftModel."""

    label: str
    base: torch.nn.Module
    dirs: list[Path]
    weights: list[float]
    dtype: torch.dtype = torch.float32
    merged_config: Any = None  # PEFT's config of the last merge
    _peft: PeftModel | None = None

    @property
    def names(self) -> list[str]:
        return [f"a{i}" for i in range(len(self.dirs))]

    def ours(self) -> list[LoraAdapter]:
        return [load_adapter(d, dtype=self.dtype) for d in self.dirs]

    @property
    def peft(self) -> PeftModel:
        if self._peft is None:
            model = PeftModel.from_pretrained(copy.deepcopy(self.base), self.dirs[0], adapter_name="a0")
            for name, directory in zip(self.names[1:], self.dirs[1:], strict=True):
                model.load_adapter(directory, adapter_name=name)
            self._peft = model
        return self._peft

    def peft_merge(self, method: str, merged: str, **options) -> dict[str, torch.Tensor]:
        """PEFT's merged ΔW per module (base orientation); DARE's masks replayed from ``seed``."""
        seed = options.pop("seed", None)
        replay = replayed_masks(self.peft, self.names, seed, method) if seed is not None else None
        with replay or contextlib.nullcontext():
            self.peft.add_weighted_adapter(
                self.names, self.weights, merged, combination_type=method, **options
            )
        deltas = {
            key: module.get_delta_weight(merged).detach().clone()
            for key, module in self.peft.base_model.model.named_modules()
            if isinstance(module, LoraLayer) and merged in module.lora_A
        }
        self.merged_config = self.peft.peft_config[merged]
        self.peft.delete_adapter(merged)
        return deltas


@contextlib.contextmanager
def replayed_masks(model: PeftModel, names: list[str], seed: int, method: str) -> Iterator[None]:
    """Make PEFT's ``torch.bernoulli`` calls return our masks, ``dare_mask`` from ``mask_generator(seed,
    module, slot)``.

    PEFT draws one mask per (module in model order, adapter present there): for the A's then the B's of
    the factor-wise types, for the dense ΔW's of the ``_svd`` types. Seeding torch's global generator
    cannot reproduce that: ``add_weighted_adapter`` first initialises the new adapter's layers from the
    same generator, and an adapter file does not record the model's module order."""
    roles = ("A", "B") if method in FACTORWISE else ("W",)
    schedule = []
    for key, module in model.base_model.model.named_modules():
        if isinstance(module, LoraLayer):
            present = [i for i, name in enumerate(names) if name in module.lora_A]
            schedule += [(key, f"{role}{i}") for role in roles for i in present]
    draws = iter(schedule)
    real = torch.bernoulli

    def bernoulli(p: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        key, slot = next(draws)
        density = float(p.reshape(-1)[0])  # PEFT's p is full_like(task tensor, density)
        return dare_mask(p.shape, density, mask_generator(seed, key, slot, p.device)).to(p.dtype)

    torch.bernoulli = bernoulli
    try:
        yield
    finally:
        torch.bernoulli = real
    assert next(draws, None) is None, "PEFT drew fewer masks than expected"


def assert_matches(ours: MergeResult, theirs: dict[str, torch.Tensor], tolerance: float = TOLERANCE) -> None:
    assert set(ours.adapter.modules) == set(theirs)
    worst = max(
        (relative(ours.adapter.modules[key].base_orientation_delta(), delta), key)
        for key, delta in theirs.items()
    )
    assert worst[0] <= tolerance, f"{worst[1]}: relative error {worst[0]:.2e}"


def dense_sum(adapters: list[LoraAdapter], weights: list[float]) -> dict[str, torch.Tensor]:
    """Σ wᵢ·sᵢ·BᵢAᵢ per module in fp64, base orientation."""
    out: dict[str, torch.Tensor] = {}
    for adapter, weight in zip(adapters, weights, strict=True):
        for key, module in adapter.modules.items():
            delta = module.base_orientation_delta(torch.float64) * weight
            out[key] = out[key] + delta if key in out else delta
    return out


# Adapters ------------------------------------------------------------------------------------------------


def to_bf16(directory: Path, target: Path) -> Path:
    target.mkdir()
    tensors = load_file(directory / "adapter_model.safetensors")
    save_file(
        {k: v.to(torch.bfloat16) for k, v in tensors.items()}, str(target / "adapter_model.safetensors")
    )
    (target / "adapter_config.json").write_text((directory / "adapter_config.json").read_text())
    return target


@pytest.fixture(scope="module")
def gpt2_base() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def sets(tiny_base, adapter_factory, gpt2_base, tmp_path_factory) -> dict[str, AdapterSet]:
    base = tiny_base.model
    same = [
        adapter_factory(seed=11, r=8),
        adapter_factory(seed=12, r=8),
        adapter_factory(seed=13, r=8, targets=("q_proj", "v_proj", "down_proj")),
    ]
    mixed = [
        adapter_factory(seed=14, r=16, rank_pattern={"k_proj": 4}, alpha_pattern={"o_proj": 40}),
        adapter_factory(seed=15, r=2, targets=("q_proj", "k_proj", "v_proj", "o_proj")),
        adapter_factory(seed=16, r=6, targets=("gate_proj", "up_proj", "down_proj", "q_proj")),
    ]
    rslora = [
        adapter_factory(seed=17, r=8, use_rslora=True),
        adapter_factory(
            seed=18, r=8, use_rslora=True, targets=("q_proj", "v_proj"), alpha_pattern={"v_proj": 3}
        ),
    ]
    bf16_root = tmp_path_factory.mktemp("bf16")
    bf16 = [to_bf16(d, bf16_root / d.name) for d in same]
    gpt2_dirs = []
    for seed, targets in ((21, ("c_attn", "c_proj")), (22, ("c_attn",)), (23, ("c_proj",))):
        path = tmp_path_factory.mktemp(f"gpt2-{seed}")
        make_adapter(
            copy.deepcopy(gpt2_base),
            path,
            seed=seed,
            r=4,
            targets=targets,
            base_name="tiny-gpt2",
            fan_in_fan_out=True,
        )
        gpt2_dirs.append(path)
    return {
        "llama": AdapterSet("llama", base, same, [0.7, -0.4, 1.3]),
        "llama-bf16": AdapterSet("llama-bf16", base, bf16, [0.7, -0.4, 1.3], dtype=torch.bfloat16),
        "llama-ranks": AdapterSet("llama-ranks", base, mixed, [1.0, 0.5, -0.8]),
        "rslora": AdapterSet("rslora", base, rslora, [0.6, 0.9]),
        "gpt2": AdapterSet("gpt2", gpt2_base, gpt2_dirs, [0.8, -1.1, 0.5]),
    }


# PEFT is the oracle ----------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["llama", "llama-bf16", "gpt2"])
@pytest.mark.parametrize("method", PEFT_METHODS)
def test_every_method_matches_peft(sets: dict[str, AdapterSet], label: str, method: str) -> None:
    adapter_set = sets[label]
    options = options_for(method)
    ours = merge_adapters(adapter_set.ours(), adapter_set.weights, method, **options)
    theirs = adapter_set.peft_merge(method, f"m-{method}", **options)
    assert_matches(ours, theirs)
    peft_config = adapter_set.merged_config
    config = ours.adapter.config
    assert (config["r"], config["lora_alpha"]) == (peft_config.r, peft_config.lora_alpha)
    assert set(config["target_modules"]) == set(peft_config.target_modules)
    assert all(m.rank == config["r"] and m.scale == 1.0 for m in ours.adapter.modules.values())
    assert config["fan_in_fan_out"] is (label == "gpt2")


@pytest.mark.parametrize("method", ["cat", "svd", "ties_svd", "dare_ties_svd", "magnitude_prune_svd"])
def test_different_ranks_and_patterns_match_peft(sets: dict[str, AdapterSet], method: str) -> None:
    adapter_set = sets["llama-ranks"]
    ours = merge_adapters(adapter_set.ours(), adapter_set.weights, method, **options_for(method))
    theirs = adapter_set.peft_merge(method, f"r-{method}", **options_for(method))
    assert_matches(ours, theirs)
    expected_rank = 16 + 2 + 6 if method == "cat" else (options_for(method).get("svd_rank") or 16)
    assert ours.adapter.config["r"] == adapter_set.merged_config.r == expected_rank


@pytest.mark.parametrize("method", ["svd", "ties_svd"])
def test_svd_clamp_matches_peft_under_one_sign_convention(
    sets: dict[str, AdapterSet], method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """svd_clamp's quantile depends on the singular vectors' signs, which LAPACK leaves arbitrary; with
    PEFT's SVD given our convention (each left vector's largest entry positive) the results agree."""
    adapter_set = sets["llama"]
    options = {**options_for(method), "svd_clamp": 0.9}
    ours = merge_adapters(adapter_set.ours(), adapter_set.weights, method, **options)
    unclamped = merge_adapters(adapter_set.ours(), adapter_set.weights, method, **options_for(method))
    real_svd = torch.linalg.svd

    def svd(matrix: torch.Tensor, *args, **kwargs):
        U, S, Vh = real_svd(matrix, *args, **kwargs)
        k = S.shape[0]
        rows = U[:, :k].abs().argmax(dim=0)
        signs = torch.sign(U[rows, torch.arange(k)])
        U, Vh = U.clone(), Vh.clone()
        U[:, :k] *= signs
        Vh[:k] *= signs[:, None]
        return U, S, Vh

    monkeypatch.setattr(torch.linalg, "svd", svd)
    theirs = adapter_set.peft_merge(method, f"c-{method}", **options)
    monkeypatch.undo()
    # PEFT clamps in fp32 after its fp32 SVD; a clamp cuts the largest entries, where fp32 rounding of
    # near-equal singular values shows most (1.7e-5 seen with torch 2.13): still fp32 round-off.
    assert_matches(ours, theirs, tolerance=5e-5)
    key = "model.layers.0.mlp.up_proj"
    clamped = ours.adapter.modules[key].delta()
    assert relative(clamped, unclamped.adapter.modules[key].delta()) > 1e-3  # the clamp did something
    assert (
        ours.report["truncation_error"]["per_module"][key]
        > unclamped.report["truncation_error"]["per_module"][key]
    )


def test_dare_masks_are_reproduced_only_with_the_same_seed(sets: dict[str, AdapterSet]) -> None:
    adapter_set = sets["llama"]
    adapters = adapter_set.ours()
    first = merge_adapters(adapters, adapter_set.weights, "dare_linear_svd", density=0.5, seed=7)
    again = merge_adapters(adapters, adapter_set.weights, "dare_linear_svd", density=0.5, seed=7)
    other = merge_adapters(adapters, adapter_set.weights, "dare_linear_svd", density=0.5, seed=8)
    key = "model.layers.1.self_attn.q_proj"
    assert torch.equal(first.adapter.modules[key].delta(), again.adapter.modules[key].delta())
    assert relative(first.adapter.modules[key].delta(), other.adapter.modules[key].delta()) > 0.1
    drawn = merge_adapters(adapters, adapter_set.weights, "dare_ties", density=0.5)
    seed = drawn.report["params"]["seed"]
    replay = merge_adapters(adapters, adapter_set.weights, "dare_ties", density=0.5, seed=seed)
    assert torch.equal(drawn.adapter.modules[key].B, replay.adapter.modules[key].B)


# Where PEFT is wrong or inexact ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cat", "svd", "linear"])
def test_rslora_merge_is_right_where_peft_is_sqrt_rank_too_large(
    sets: dict[str, AdapterSet], method: str
) -> None:
    adapter_set = sets["rslora"]
    adapters = adapter_set.ours()
    ours = merge_adapters(adapters, adapter_set.weights, method)
    theirs = adapter_set.peft_merge(method, f"s-{method}")
    rank = ours.adapter.config["r"]
    assert ours.adapter.config["use_rslora"] is False
    assert adapter_set.merged_config.use_rslora is True  # PEFT 0.21.2 keeps it: its scaling is √r, not 1
    assert_matches(ours, {key: delta / math.sqrt(rank) for key, delta in theirs.items()})
    if method == "cat":  # exact: equal to the dense Σ wᵢ·sᵢ·BᵢAᵢ with sᵢ = αᵢ/√rᵢ
        exact = dense_sum(adapters, adapter_set.weights)
        for key, delta in exact.items():
            assert relative(ours.adapter.modules[key].base_orientation_delta(), delta) <= 1e-6
            assert relative(theirs[key], delta) == pytest.approx(math.sqrt(rank) - 1, rel=1e-4)
    assert any("rsLoRA" in note for note in ours.report["notes"])


@pytest.mark.parametrize("label", ["llama-ranks", "gpt2", "llama-bf16"])
def test_sum_is_the_exact_weighted_sum(sets: dict[str, AdapterSet], label: str) -> None:
    adapter_set = sets[label]
    adapters = adapter_set.ours()
    result = merge_adapters(adapters, adapter_set.weights, "sum")
    exact = dense_sum(adapters, adapter_set.weights)
    assert set(result.adapter.modules) == set(exact)
    for key, delta in exact.items():
        assert relative(result.adapter.modules[key].base_orientation_delta(), delta) <= 1e-6
    widest = max(sum(a.modules[k].rank for a in adapters if k in a.modules) for k in exact)
    assert result.adapter.config["r"] == result.adapter.config["lora_alpha"] == widest


def test_linear_is_not_the_weighted_sum(sets: dict[str, AdapterSet]) -> None:
    """PEFT's linear merges A and B separately: (Σ√wᵢsᵢBᵢ)(Σ√wᵢsᵢAᵢ) has cross terms BᵢAⱼ."""
    adapter_set = sets["llama"]
    adapters = adapter_set.ours()
    linear = merge_adapters(adapters, adapter_set.weights, "linear")
    exact = dense_sum(adapters, adapter_set.weights)
    key = "model.layers.0.self_attn.q_proj"
    assert relative(linear.adapter.modules[key].delta(), exact[key]) > 0.5


def test_svd_error_is_at_most_peft_and_reported(sets: dict[str, AdapterSet]) -> None:
    adapter_set = sets["llama-ranks"]
    adapters = adapter_set.ours()
    ours = merge_adapters(adapters, adapter_set.weights, "svd", svd_rank=4)
    theirs = adapter_set.peft_merge("svd", "e-svd", svd_rank=4)
    exact = dense_sum(adapters, adapter_set.weights)
    reported = ours.report["truncation_error"]
    for key, delta in exact.items():
        our_error = relative(ours.adapter.modules[key].base_orientation_delta(), delta)
        peft_error = relative(theirs[key], delta)
        assert our_error <= peft_error * (1 + 1e-5) + 1e-7, key
        assert reported["per_module"][key] == pytest.approx(our_error, rel=1e-3, abs=1e-6)
    assert max(reported["per_module"].values()) == reported["max"] > 0.01
    assert json.loads(json.dumps(ours.report))["params"]["svd_rank"] == 4


def test_dense_svd_types_are_closer_to_the_exact_truncation_than_peft(sets: dict[str, AdapterSet]) -> None:
    """Our ≤1e-5 differences from PEFT in the ``_svd`` types are PEFT's fp32 SVD error: against the fp64
    truncation of PEFT's own pre-SVD merge, ours is ~1e-7 off and PEFT ~1e-6."""
    from peft.utils.merge_utils import magnitude_prune

    adapter_set = sets["llama"]
    options = {"density": 0.6, "svd_rank": 4}
    ours = merge_adapters(adapter_set.ours(), adapter_set.weights, "magnitude_prune_svd", **options)
    theirs = adapter_set.peft_merge("magnitude_prune_svd", "t-mp", **options)
    ours_worst = peft_worst = 0.0
    for key, module in adapter_set.peft.base_model.model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        present = [
            (n, w) for n, w in zip(adapter_set.names, adapter_set.weights, strict=True) if n in module.lora_A
        ]
        deltas = [module.get_delta_weight(name) for name, _ in present]
        merged = magnitude_prune(deltas, torch.tensor([w for _, w in present]), 0.6).double()
        U, S, Vh = torch.linalg.svd(merged, full_matrices=False)
        exact = (U[:, :4] * S[:4]) @ Vh[:4]
        ours_worst = max(ours_worst, relative(ours.adapter.modules[key].delta(), exact))
        peft_worst = max(peft_worst, relative(theirs[key], exact))
    assert ours_worst <= 1e-6
    assert ours_worst < peft_worst


def test_bf16_storage_is_computed_in_fp32(sets: dict[str, AdapterSet]) -> None:
    adapters = sets["llama-bf16"].ours()
    assert next(iter(adapters[0].modules.values())).A.dtype == torch.bfloat16
    result = merge_adapters(adapters, sets["llama-bf16"].weights, "svd")
    module = next(iter(result.adapter.modules.values()))
    assert module.A.dtype == module.B.dtype == torch.float32
    assert result.report["dtype"] == "float32"


# The merged directory loads with PEFT ------------------------------------------------------------------


def logits(model: torch.nn.Module, vocab: int) -> torch.Tensor:
    ids = torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(ids).logits


def with_delta(base: torch.nn.Module, adapter: LoraAdapter) -> torch.nn.Module:
    model = copy.deepcopy(base)
    with torch.no_grad():
        for key, module in adapter.modules.items():
            model.get_submodule(key).weight += module.base_orientation_delta()
    return model


@pytest.mark.parametrize(
    ("label", "method"), [("llama-ranks", "sum"), ("llama", "ties_svd"), ("gpt2", "svd"), ("rslora", "cat")]
)
def test_saved_merge_loads_with_peft(
    sets: dict[str, AdapterSet], label: str, method: str, tmp_path: Path
) -> None:
    adapter_set = sets[label]
    result = merge_adapters(adapter_set.ours(), adapter_set.weights, method, **options_for(method))
    save_adapter(tmp_path, result.adapter)
    loaded = PeftModel.from_pretrained(copy.deepcopy(adapter_set.base), tmp_path).eval()
    vocab = adapter_set.base.config.vocab_size
    expected = logits(with_delta(adapter_set.base, result.adapter), vocab)
    assert relative(logits(loaded, vocab).flatten(1), expected.flatten(1)) <= 1e-5
    assert relative(logits(adapter_set.base, vocab).flatten(1), expected.flatten(1)) > 1e-3


def test_target_modules_union_covers_regex_lists_and_layer_scopes(
    sets: dict[str, AdapterSet], adapter_factory, tiny_base, tmp_path: Path
) -> None:
    regex = load_adapter(sets["llama"].dirs[2])  # targets q_proj, v_proj, down_proj
    regex.config["target_modules"] = r"model\.layers\.\d+\.(self_attn\.(q_proj|v_proj)|mlp\.down_proj)"
    listed = load_adapter(sets["llama"].dirs[1])
    union = merge_adapters([regex, listed], [1.0, 1.0], "sum").adapter
    assert union.config["target_modules"].startswith(r"(model\.layers")
    scoped = load_adapter(adapter_factory(seed=19, r=4, layers_to_transform=[1], targets=("k_proj",)))
    merged = merge_adapters([regex, listed, scoped], [1.0, 0.5, 2.0], "sum").adapter
    assert merged.config["target_modules"] == sorted(merged.modules)
    assert merged.config["layers_to_transform"] is None
    for adapter, directory in ((union, tmp_path / "union"), (merged, tmp_path / "scoped")):
        save_adapter(directory, adapter)
        loaded = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), directory).eval()
        expected = logits(with_delta(tiny_base.model, adapter), 128)
        assert relative(logits(loaded, 128).flatten(1), expected.flatten(1)) <= 1e-5


# Refusals --------------------------------------------------------------------------------------------


def test_refuses_adapters_of_different_bases(sets: dict[str, AdapterSet]) -> None:
    first, second = sets["llama"].ours()[:2]
    second.config["base_model_name_or_path"] = "another-llama"
    with pytest.raises(IncompatibleAdapters, match=r"different base models.*another-llama"):
        merge_adapters([first, second], [1.0, 1.0], "svd")
    second.config["base_model_name_or_path"] = first.config["base_model_name_or_path"]
    second.config["revision"] = "0" * 40
    with pytest.raises(IncompatibleAdapters, match="different base models"):
        merge_adapters([first, second], [1.0, 1.0], "cat")


def test_refuses_different_shapes_for_one_module(sets: dict[str, AdapterSet], other_base, tmp_path) -> None:
    make_adapter(copy.deepcopy(other_base.model), tmp_path, seed=3, r=8)  # hidden 96, same base name
    wider = load_adapter(tmp_path)
    with pytest.raises(IncompatibleAdapters, match=r"model\.layers\.0\.mlp\.down_proj differs.*\(64, 128\)"):
        merge_adapters([sets["llama"].ours()[0], wider], [1.0, 1.0], "sum")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("use_dora", True, "DoRA"),
        ("lora_bias", True, "bias on lora_B"),
        ("bias", "lora_only", "trains biases"),
    ],
)
def test_refuses_what_a_merged_lora_cannot_carry(
    sets: dict[str, AdapterSet], option: str, value: object, message: str
) -> None:
    first, second = sets["llama"].ours()[:2]
    second.config[option] = value
    with pytest.raises(IncompatibleAdapters, match=f"adapter 1 cannot be merged: .*{message}"):
        merge_adapters([first, second], [1.0, 1.0], "svd")


def test_refuses_different_ranks_for_factorwise_methods(sets: dict[str, AdapterSet]) -> None:
    adapters = sets["llama-ranks"].ours()
    with pytest.raises(
        IncompatibleAdapters,
        match=r"one rank per module, but "
        r"model\.layers\.0\.mlp\.down_proj has adapter 0: r=16, adapter 2: r=6",
    ):
        merge_adapters(adapters, [1.0, 1.0, 1.0], "ties", density=0.5)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("mean", {}, "unknown merge method 'mean'"),
        ("ties", {}, "needs a density"),
        ("ties", {"density": 0.0}, r"density must be in \(0, 1\]"),
        ("dare_linear", {"density": 1.5}, r"density must be in \(0, 1\]"),
        ("svd", {"density": 0.5}, "density applies to"),
        ("svd", {"svd_rank": 0}, "svd_rank must be an integer >= 1"),
        ("cat", {"svd_rank": 4}, "svd_rank applies to"),
        ("svd", {"svd_clamp": 1.5}, r"svd_clamp is a quantile in \(0, 1\]"),
        ("ties", {"density": 0.5, "majority_sign_method": "mode"}, "majority_sign_method must be one of"),
    ],
)
def test_refuses_bad_parameters(
    sets: dict[str, AdapterSet], method: str, options: dict, message: str
) -> None:
    adapters = sets["llama"].ours()[:2]
    with pytest.raises(ValueError, match=message):
        merge_adapters(adapters, [1.0, 1.0], method, **options)


def test_refuses_a_weight_count_that_does_not_match(sets: dict[str, AdapterSet]) -> None:
    adapters = sets["llama"].ours()
    with pytest.raises(ValueError, match="3 adapters but 2 weights"):
        merge_adapters(adapters, [1.0, 1.0], "svd")
    with pytest.raises(ValueError, match="at least one adapter"):
        merge_adapters([], [], "svd")


def test_missing_modules_contribute_zero() -> None:
    """A module only one adapter has comes out as that adapter's weighted update, whatever the method."""
    torch.manual_seed(0)
    shared = LoraModule(A=torch.randn(4, 16), B=torch.randn(12, 4), scale=2.0)
    only = LoraModule(A=torch.randn(4, 16), B=torch.randn(12, 4), scale=0.5)
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q", "v"]}
    first = LoraAdapter(modules={"m.q": shared, "m.v": only}, config=config)
    second = LoraAdapter(modules={"m.q": copy.deepcopy(shared)}, config={**config, "target_modules": ["q"]})
    for method in ("sum", "cat", "svd", "linear", "dare_linear"):
        options = {"density": 1.0, "seed": 0} if method == "dare_linear" else {}
        merged = merge_adapters([first, second], [0.3, 0.7], method, **options).adapter
        assert relative(merged.modules["m.v"].delta(), only.delta() * 0.3) <= 1e-6, method
        if method in ("sum", "cat", "svd"):
            assert relative(merged.modules["m.q"].delta(), shared.delta()) <= 1e-5, method
        assert merged.config["target_modules"] == ["q", "v"]


# Large modules: the fast paths (band selection, randomized truncation) ----------------------------------

LARGE = {"model.layers.0.mlp.up_proj": False, "h.0.mlp.c_fc": True}  # name: transposed_in_base


def large_adapters() -> list[LoraAdapter]:
    """Three r=8 adapters of two 1152×1024 modules (one stored transposed, as under fan_in_fan_out): over
    a million entries each, so magnitude pruning selects in a sampled band and the SVD is randomized."""
    generator = torch.Generator().manual_seed(40)
    adapters = []
    for _ in range(3):
        modules = {
            name: LoraModule(
                A=torch.randn(8, 1024, generator=generator) / 32,
                B=torch.randn(1152, 8, generator=generator) * 0.02,
                scale=2.0,
                transposed_in_base=transposed,
            )
            for name, transposed in LARGE.items()
        }
        config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["up_proj", "c_fc"]}
        adapters.append(LoraAdapter(modules=modules, config=config))
    return adapters


def peft_dense_merge(method: str, key: str, adapters: list[LoraAdapter], weights: list[float], seed: int):
    """PEFT's own merge_utils on the base-orientation ΔWᵢ (what ``add_weighted_adapter`` feeds them), DARE's
    masks drawn from ``mask_generator(seed, key, f"W{i}")`` as ours are."""
    from peft.utils import merge_utils

    deltas = [a.modules[key].base_orientation_delta() for a in adapters]
    combine = getattr(merge_utils, method.removesuffix("_svd"))
    options = {"majority_sign_method": "total"} if method.endswith("ties_svd") else {}
    draws = iter(range(len(deltas)))
    real = torch.bernoulli

    def bernoulli(p: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        generator = mask_generator(seed, key, f"W{next(draws)}")
        return dare_mask(p.shape, float(p.reshape(-1)[0]), generator).to(p.dtype)

    torch.bernoulli = bernoulli
    try:
        return combine(deltas, torch.tensor(weights), 0.5, **options)
    finally:
        torch.bernoulli = real


@pytest.mark.parametrize("method", ["ties_svd", "dare_ties_svd", "dare_linear_svd", "magnitude_prune_svd"])
def test_large_modules_merge_as_peft_defines_to_the_optimal_truncation(method: str) -> None:
    """PEFT's pre-SVD merge of >1M-entry modules, truncated by randomized subspace iteration: the same
    truncation as LAPACK's exact one to 1e-4 (PEFT's own fp32 SVD is ~1e-6 from it), its error the
    optimum, and the reported error the one measured."""
    adapters, weights = large_adapters(), [0.7, -0.4, 1.1]
    result = merge_adapters(adapters, weights, method, density=0.5, seed=9)
    assert result.report["svd_solvers"] == {"randomized": 2}
    for key in LARGE:
        merged = peft_dense_merge(method, key, adapters, weights, seed=9).double()
        U, singular, Vh = torch.linalg.svd(merged, full_matrices=False)
        optimum = float(singular[8:].norm() / singular.norm())
        best = (U[:, :8] * singular[:8]) @ Vh[:8]
        ours = result.adapter.modules[key].base_orientation_delta(torch.float64)
        measured = float((ours - merged).norm() / merged.norm())
        assert measured <= optimum * (1 + 1e-6), key
        assert float((ours - best).norm() / best.norm()) <= 1e-4, key
        assert result.report["truncation_error"]["per_module"][key] == pytest.approx(measured, rel=1e-4)
    again = merge_adapters(adapters, weights, method, density=0.5, seed=9)
    key = next(iter(LARGE))
    assert torch.equal(again.adapter.modules[key].B, result.adapter.modules[key].B)


@pytest.mark.parametrize("method", ["magnitude_prune_svd", "dare_linear_svd"])
def test_unpruned_dense_types_are_truncated_from_factors(method: str) -> None:
    """density=1 prunes nothing: the merge is Σ wᵢΔWᵢ, low-rank, so it is truncated exactly from its
    factors (as ``svd``) without forming a dense update."""
    adapters, weights = large_adapters(), [0.7, -0.4, 1.1]
    result = merge_adapters(adapters, weights, method, density=1.0, seed=9)
    assert result.report["svd_solvers"] == {"factored": 2}
    svd = merge_adapters(adapters, weights, "svd")
    for key in LARGE:
        ours = result.adapter.modules[key].delta()
        assert relative(ours, svd.adapter.modules[key].delta()) <= 1e-6


def test_kth_largest_is_kthvalue_with_its_ties() -> None:
    """The band selection against torch.kthvalue on >1M values: Gaussian, a low-rank product's, and values
    with many ties (where ``values >= threshold`` holds more than k)."""
    from registry.compute.merge import _kth_largest

    generator = torch.Generator().manual_seed(41)
    cases = {
        "gaussian": torch.randn(1_200_000, generator=generator).abs(),
        "low-rank": (torch.randn(1200, 3, generator=generator) @ torch.randn(3, 1000, generator=generator))
        .abs()
        .reshape(-1),
        "ties": torch.randint(0, 40, (1_100_000,), generator=generator).float(),
    }
    for name, values in cases.items():
        for density in (0.05, 0.5, 0.97):
            k = int(density * values.numel())
            threshold, tied = _kth_largest(values, k)
            expected = torch.kthvalue(values, values.numel() - k + 1).values
            assert threshold == expected, (name, density)
            assert tied == (int((values >= expected).sum()) != k), (name, density)


@pytest.mark.parametrize("transposed", [False, True])
def test_magnitude_pruning_of_a_large_tied_tensor_keeps_exactly_k(transposed: bool) -> None:
    """Over a million entries with many ties at the threshold: exactly int(density·n) entries survive,
    none smaller than any pruned one (which of the tied ones is ours to choose: see _magnitude_keep)."""
    from registry.compute.merge import _magnitude_keep, _Workspace

    generator = torch.Generator().manual_seed(42)
    values = (torch.randint(-30, 31, (1100, 1000), generator=generator) * 0.25).float()
    t = values.T.contiguous().T if transposed else values.clone()
    keep = _magnitude_keep(t, 0.3, torch.empty_like(t), _Workspace())
    assert keep.mask is not None  # the threshold is tied
    pruned = keep.apply_(t.clone(), torch.empty_like(t))
    k = int(0.3 * t.numel())
    assert int(keep.mask.sum()) == k and torch.equal(pruned[keep.mask], values[keep.mask])
    assert float(values[keep.mask].abs().min()) >= float(values[~keep.mask].abs().max())
