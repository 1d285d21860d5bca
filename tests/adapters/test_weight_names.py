"""WeightIndex: adapter module names resolve to one 2-D base weight, exactly or across a leading prefix."""

from __future__ import annotations

from registry.adapters.base_manifest import WeightShape
from registry.adapters.safetensors_header import TensorInfo
from registry.adapters.weight_names import WeightIndex

Q0 = "model.layers.0.self_attn.q_proj"


def _index(*names: str, shape: tuple[int, ...] = (8, 4)) -> WeightIndex[WeightShape]:
    return WeightIndex({name: WeightShape(shape=shape, dtype="F32") for name in names})


def test_exact_module_weight_wins_over_prefix_variants() -> None:
    index = _index(f"{Q0}.weight", f"text.{Q0}.weight", "layers.0.self_attn.q_proj.weight")
    assert index.resolve(Q0) == (f"{Q0}.weight", (f"{Q0}.weight",))


def test_base_adds_a_prefix() -> None:
    index = _index(f"{Q0}.weight", "model.layers.0.self_attn.k_proj.weight")
    assert index.resolve("layers.0.self_attn.q_proj") == (f"{Q0}.weight", (f"{Q0}.weight",))


def test_adapter_adds_a_prefix() -> None:
    index = _index("layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight")
    key, candidates = index.resolve(Q0)
    assert key == "layers.0.self_attn.q_proj.weight"
    assert candidates == ("layers.0.self_attn.q_proj.weight",)


def test_prefix_must_end_at_a_dot() -> None:
    index = _index("model.layers.0.self_attn.xq_proj.weight")
    assert index.resolve("q_proj") == (None, ())


def test_ambiguous_suffix_gives_no_key_and_every_candidate() -> None:
    index = _index(f"text.{Q0}.weight", f"vision.{Q0}.weight", "model.layers.0.self_attn.k_proj.weight")
    assert index.resolve(Q0) == (None, (f"text.{Q0}.weight", f"vision.{Q0}.weight"))


def test_only_two_dimensional_tensors_are_indexed() -> None:
    index = WeightIndex(
        {
            f"{Q0}.weight": TensorInfo(f"{Q0}.weight", "F32", (8, 4), 0, 128),
            "model.norm.weight": TensorInfo("model.norm.weight", "F32", (8,), 128, 160),
            "conv.weight": TensorInfo("conv.weight", "F32", (8, 4, 3, 3), 160, 1312),
        }
    )
    assert list(index.weights) == [f"{Q0}.weight"]
    assert index.resolve("model.norm") == (None, ())
    assert index.resolve("norm") == (None, ())
    assert index.resolve("conv") == (None, ())
    assert index.resolve(Q0)[0] == f"{Q0}.weight"


def test_near_lists_weights_with_the_same_last_name() -> None:
    index = _index(
        *(f"model.layers.{i}.self_attn.q_proj.weight" for i in range(5)),
        "model.layers.0.self_attn.k_proj.weight",
    )
    assert index.resolve("model.layers.9.self_attn.q_proj") == (None, ())
    assert index.near("model.layers.9.self_attn.q_proj") == [
        f"model.layers.{i}.self_attn.q_proj.weight" for i in range(3)
    ]
    assert index.near("model.layers.9.self_attn.q_proj", limit=1) == [f"{Q0}.weight"]
    assert index.near("model.layers.9.self_attn.o_proj") == []
