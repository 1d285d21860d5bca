"""adapter_diff, plot_heatmap and difference_adapter against dense fp64 ΔW and PEFT itself."""

from __future__ import annotations

import json
import math

import pytest
import torch
from matplotlib.image import imread

from registry.compute.base_merge import merge_into_base
from registry.compute.diff import (
    AdapterDiff,
    ModuleDiff,
    adapter_diff,
    difference_adapter,
    heatmap_figure,
    plot_heatmap,
    split_name,
)
from registry.compute.lora import IncompatibleAdapters, LoraAdapter, LoraModule, load_adapter, save_adapter
from registry.compute.lowrank import frobenius_inner
from tests.compute.conftest import Base, logits, peft_with_adapter

SUBSET = ("q_proj", "v_proj", "o_proj", "up_proj", "embed_tokens")


def dense(module: LoraModule | None, like: LoraModule | None = None) -> torch.Tensor:
    """ΔW in fp64, or zeros shaped like ``like`` for a module the adapter lacks."""
    if module is None:
        assert like is not None
        return torch.zeros(like.shape, dtype=torch.float64)
    return module.delta(torch.float64)


@pytest.fixture(scope="module")
def pair(llama: Base, peft_adapter) -> tuple[LoraAdapter, LoraAdapter]:
    """a: r=8 on the 7 projections; b: r=4 on q/v/o/up and the embedding (so modules on one side only)."""
    a = load_adapter(peft_adapter(llama, seed=1, r=8))
    b = load_adapter(peft_adapter(llama, seed=2, r=4, targets=SUBSET))
    return a, b


def test_diff_numbers_match_dense_computation(pair):
    a, b = pair
    diff = adapter_diff(a, b)

    names = sorted(a.modules.keys() | b.modules.keys())
    assert [m.name for m in diff.modules] == names
    assert diff.only_in_b == ["model.embed_tokens"]
    assert len(diff.only_in_a) == 2 * 3 and all(
        n.endswith(("k_proj", "gate_proj", "down_proj")) for n in diff.only_in_a
    )
    for m in diff.modules:
        ma, mb = a.modules.get(m.name), b.modules.get(m.name)
        da, db = dense(ma, mb), dense(mb, ma)
        norm_a, norm_b = float(da.norm()), float(db.norm())
        distance = float((db - da).norm())
        assert m.norm_a == pytest.approx(norm_a, rel=1e-9, abs=1e-12)
        assert m.norm_b == pytest.approx(norm_b, rel=1e-9, abs=1e-12)
        assert m.distance == pytest.approx(distance, rel=1e-9)
        assert m.relative == pytest.approx(distance / max(norm_a, norm_b), rel=1e-9)
        if ma is None or mb is None:
            assert m.cosine is None and m.relative == pytest.approx(1.0)
        else:
            assert m.cosine == pytest.approx(float((da * db).sum()) / (norm_a * norm_b), rel=1e-7, abs=1e-12)
        assert (m.layer, m.module_type) == split_name(m.name)
    q = next(m for m in diff.modules if m.name == "model.layers.1.self_attn.q_proj")
    assert (q.layer, q.module_type) == (1, "self_attn.q_proj")
    embed = next(m for m in diff.modules if m.name == "model.embed_tokens")
    assert (embed.layer, embed.module_type) == (None, "model.embed_tokens")
    assert diff.config_changes["r"] == (8, 4)
    assert diff.config_changes["lora_alpha"] == (16, 8)
    assert "base_model_name_or_path" not in diff.config_changes


def test_distance_of_nearly_equal_adapters_does_not_cancel(pair):
    """B₂ = B₁ + 1e-6·noise: ‖a‖² + ‖b‖² − 2⟨a, b⟩ loses every digit in fp32; the QR core keeps them."""
    a, _ = pair
    generator = torch.Generator().manual_seed(0)
    b = LoraAdapter(
        modules={
            name: LoraModule(
                A=m.A.clone(),
                B=m.B + 1e-6 * torch.randn(m.B.shape, generator=generator),
                scale=m.scale,
                kind=m.kind,
                transposed_in_base=m.transposed_in_base,
            )
            for name, m in a.modules.items()
        },
        config=dict(a.config),
    )
    diff = adapter_diff(a, b)
    assert diff.config_changes == {} and not diff.only_in_a and not diff.only_in_b
    trace_errors = []
    for m in diff.modules:
        ma, mb = a.modules[m.name], b.modules[m.name]
        exact = float((dense(mb) - dense(ma)).norm())
        assert 0 < exact < 1e-4 * m.norm_a
        assert m.distance == pytest.approx(exact, rel=1e-6)
        assert m.cosine == pytest.approx(1.0, abs=1e-9)
        Ba, Bb = ma.B * ma.scale, mb.B * mb.scale  # the trace formula in the factors' own fp32
        squared = frobenius_inner(Ba, ma.A, Ba, ma.A) + frobenius_inner(Bb, mb.A, Bb, mb.A)
        squared = squared - 2 * frobenius_inner(Ba, ma.A, Bb, mb.A)
        trace_errors.append(abs(math.sqrt(max(float(squared), 0.0)) - exact) / exact)
    assert max(trace_errors) > 0.1  # the case really is one where the naive formula fails


def test_same_update_factored_differently_has_zero_distance(pair):
    """b = a with B doubled, the scale halved and the factors in fp64 (a's are fp32): every ΔW is the same,
    so the distance must be ~0 (the QR core, not the cancelling trace formula) and the cosine 1."""
    a, _ = pair
    b = LoraAdapter(
        modules={
            name: LoraModule(
                A=m.A.double(),
                B=2 * m.B.double(),
                scale=m.scale / 2,
                kind=m.kind,
                transposed_in_base=m.transposed_in_base,
            )
            for name, m in a.modules.items()
        },
        config=dict(a.config),
    )
    diff = adapter_diff(a, b)
    for m in diff.modules:
        norm = float(dense(a.modules[m.name]).norm())
        assert m.norm_a == pytest.approx(norm, rel=1e-12) and m.norm_b == pytest.approx(norm, rel=1e-12)
        assert m.distance <= 1e-12 * norm
        assert m.cosine == pytest.approx(1.0, abs=1e-12)


def test_summary_ranks_modules_and_totals_layers(pair):
    diff = adapter_diff(*pair)
    summary = diff.summary(top=3)

    by_distance = sorted(diff.modules, key=lambda m: -m.distance)
    assert [m["name"] for m in summary["most_changed"]] == [m.name for m in by_distance[:3]]
    total_squared = sum(m.distance**2 for m in diff.modules)
    assert summary["total"]["distance"] == pytest.approx(math.sqrt(total_squared))
    assert summary["total"]["norm_a"] == pytest.approx(math.sqrt(sum(m.norm_a**2 for m in diff.modules)))
    assert summary["most_changed"][0]["share"] == pytest.approx(by_distance[0].distance ** 2 / total_squared)
    assert [row["layer"] for row in summary["per_layer"]] == [0, 1, None]
    for row in summary["per_layer"]:
        group = [m for m in diff.modules if m.layer == row["layer"]]
        assert row["modules"] == len(group)
        assert row["distance"] == pytest.approx(math.sqrt(sum(m.distance**2 for m in group)))
    assert sum(row["share"] for row in summary["per_layer"]) == pytest.approx(1.0)
    assert sum(row["share"] for row in summary["per_module_type"]) == pytest.approx(1.0)
    assert (summary["modules"], summary["only_in_a"], summary["only_in_b"]) == (len(diff.modules), 6, 1)
    assert summary["config_changes"]["r"] == [8, 4]

    document = json.loads(json.dumps(diff.to_json()))
    assert len(document["modules"]) == len(diff.modules)
    assert document["summary"]["total"] == pytest.approx(diff.summary()["total"])
    assert document["modules"][0]["distance"] == diff.modules[0].distance


def test_heatmap_is_a_readable_png(pair, tmp_path):
    path = tmp_path / "diff.png"
    plot_heatmap(adapter_diff(*pair), path)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    height, width, channels = image.shape
    assert channels in (3, 4)
    assert 300 <= height <= 3000 and 600 <= width <= 3000
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_difference_adapter_is_exact_and_peft_applies_it(pair, llama, tmp_path):
    """(base + ΔW_a) + (ΔW_b − ΔW_a) under PEFT gives the logits of base + ΔW_b."""
    a, b = pair
    difference, report = difference_adapter(a, b)

    assert report["mode"] == "exact" and report["max_relative_error"] == 0.0
    for name, module in difference.modules.items():
        expected = dense(b.modules.get(name), a.modules.get(name)) - dense(
            a.modules.get(name), b.modules.get(name)
        )
        got = module.delta(torch.float64)
        assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max())
        assert module.rank == sum(side.modules[name].rank for side in (a, b) if name in side.modules)
    assert {module.rank for module in difference.modules.values()} == {12, 8, 4}

    merged_a = tmp_path / "base-plus-a"
    merge_into_base(a, llama.path, merged_a)
    save_adapter(tmp_path / "difference", difference)
    got = logits(peft_with_adapter(Base(merged_a, llama.model), tmp_path / "difference"))
    b_dir = tmp_path / "b"
    save_adapter(b_dir, b)
    expected = logits(peft_with_adapter(llama, b_dir))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_compressed_difference_reports_its_truncation_error(pair):
    a, b = pair
    difference, report = difference_adapter(a, b, rank=3)

    assert report["mode"] == "svd"
    for name, module in difference.modules.items():
        expected = dense(b.modules.get(name), a.modules.get(name)) - dense(
            a.modules.get(name), b.modules.get(name)
        )
        singular = torch.linalg.svdvals(expected)
        best = float(singular[3:].norm())
        entry = report["modules"][name]
        assert module.rank == entry["rank"] == 3
        assert entry["error"] == pytest.approx(best, rel=1e-4)
        assert entry["relative_error"] == pytest.approx(best / float(expected.norm()), rel=1e-4)
        assert float((module.delta(torch.float64) - expected).norm()) == pytest.approx(best, rel=1e-3)
    assert report["max_relative_error"] == max(e["relative_error"] for e in report["modules"].values()) > 0


def test_modules_of_different_shapes_are_refused(pair):
    a, _ = pair
    name = "model.layers.0.self_attn.q_proj"
    other = LoraAdapter(modules={name: LoraModule(A=torch.ones(2, 32), B=torch.ones(64, 2), scale=1.0)})
    with pytest.raises(IncompatibleAdapters, match="different base models"):
        adapter_diff(a, other)
    with pytest.raises(IncompatibleAdapters, match="different base models"):
        difference_adapter(a, other)


def _three_module_diff(largest: float) -> AdapterDiff:
    """An identical module (an exact 0, stored as -0.0 to catch a "-0"), a changed one, one only in B."""
    modules = [
        ModuleDiff("model.layers.0.self_attn.q_proj", 0, "self_attn.q_proj", 1.0, 1.0, -0.0, -0.0, 1.0),
        ModuleDiff("model.layers.0.self_attn.v_proj", 0, "self_attn.v_proj", 1.0, 1.0, largest, largest, 0.0),
        ModuleDiff("model.layers.1.self_attn.q_proj", 1, "self_attn.q_proj", 0.0, 2.0, 2.0, 1.0, None),
    ]
    return AdapterDiff(modules, only_in_a=[], only_in_b=["model.layers.1.self_attn.q_proj"])


def _cells(figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].texts]


def test_an_adapter_against_itself_is_exactly_0(pair):
    a, _ = pair
    diff = adapter_diff(a, a)
    assert {(m.distance, m.relative, m.cosine) for m in diff.modules} == {(0.0, 0.0, 1.0)}
    assert set(_cells(heatmap_figure(diff))) == {"0"}


def test_heatmap_names_the_refs_and_prints_exact_zeros_as_0():
    figure = heatmap_figure(_three_module_diff(0.5), names=("acme/a:v3", "acme/b:v1"))
    figure.canvas.draw()

    title = figure.get_suptitle()
    assert title.splitlines()[0] == "A: acme/a:v3  vs  B: acme/b:v1"
    assert sorted(_cells(figure)) == ["0", "0.5", "B only"]
    colorbar_ticks = [label.get_text() for label in figure.axes[1].get_yticklabels()]
    assert colorbar_ticks[0] == "0" and not any(t in ("0.0", "0.00", "-0") for t in colorbar_ticks)


def test_heatmap_scale_max_follows_the_plot_and_fixed_is_the_same_for_every_plot(tmp_path):
    small, large = _three_module_diff(0.25), _three_module_diff(1.9)
    assert [heatmap_figure(d).axes[0].images[0].norm.vmax for d in (small, large)] == [1.0, 1.9]
    fixed = [heatmap_figure(d, scale="fixed").axes[0].images[0] for d in (small, large)]
    assert [image.norm.vmax for image in fixed] == [math.sqrt(2)] * 2
    assert fixed[0].to_rgba(0.7) == fixed[1].to_rgba(0.7)  # one value, one colour, in every plot
    assert [image.colorbar.extend for image in fixed] == ["neither", "max"]  # 1.9 > √2: off the scale
    assert "fixed scale 0..√2" in fixed[0].colorbar.ax.get_ylabel()
    with pytest.raises(ValueError, match="scale must be one of max, fixed"):
        heatmap_figure(small, scale="log")

    paths = {scale: tmp_path / f"{scale}.png" for scale in ("max", "fixed")}
    for scale, path in paths.items():
        plot_heatmap(small, path, names=("x/a:v1", "x/b:v1"), scale=scale)
    maximum, fixed_image = (imread(path)[..., :3] for path in paths.values())
    assert maximum.shape == fixed_image.shape and (maximum != fixed_image).any()  # the colours differ
