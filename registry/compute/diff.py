"""Compare two adapters module by module, exactly, without forming any ΔW = s·B·A.

Per module, both norms, the inner product, the cosine and the distance ``‖ΔW_b − ΔW_a‖`` come from ONE
pair of stacked (r_a + r_b)² Gram matrices (``lowrank.compare``, built on ``lowrank.pair_statistics``); where
``‖a‖² + ‖b‖² − 2⟨a, b⟩`` cancels (nearly equal adapters) the distance comes from the QR core of the stacked
factors instead, which stays accurate. All of it runs in fp64 on factors of size (out + in)·r, so comparing
two adapters costs about as much as reading them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from registry.compute.extract import lora_config_for
from registry.compute.lora import IncompatibleAdapters, LoraAdapter, LoraModule
from registry.compute.lowrank import compare, factored_svd, frobenius_inner, one_thread, truncate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_ANNOTATE_CELLS = 600  # write the value into each heatmap cell up to this many cells
SCALES = ("max", "fixed")  # the heatmap's colour range: this plot's largest value, or 0..FIXED_SCALE
FIXED_SCALE = math.sqrt(2)  # the relative distance of two orthogonal updates of equal norm


@dataclass
class ModuleDiff:
    """One module: ``norm_a = ‖ΔW_a‖_F``, ``distance = ‖ΔW_b − ΔW_a‖_F``, ``relative = distance /
    max(norm_a, norm_b)`` (0 when both are 0), ``cosine = ⟨ΔW_a, ΔW_b⟩ / (norm_a·norm_b)`` (None when
    either side is absent or zero)."""

    name: str
    layer: int | None
    module_type: str
    norm_a: float
    norm_b: float
    distance: float
    relative: float
    cosine: float | None


@dataclass
class AdapterDiff:
    modules: list[ModuleDiff]
    only_in_a: list[str]
    only_in_b: list[str]
    config_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def summary(self, top: int = 10) -> dict[str, Any]:
        """Totals over the whole adapter, the ``top`` modules that changed most (by distance, with their
        share of the total squared distance), and totals per layer and per module type."""
        total = _aggregate(self.modules)
        most = sorted(self.modules, key=lambda m: (-m.distance, m.name))[:top]
        by_layer: dict[int | None, list[ModuleDiff]] = defaultdict(list)
        by_type: dict[str, list[ModuleDiff]] = defaultdict(list)
        for m in self.modules:
            by_layer[m.layer].append(m)
            by_type[m.module_type].append(m)
        squared = total["distance"] ** 2
        return {
            "modules": len(self.modules),
            "only_in_a": len(self.only_in_a),
            "only_in_b": len(self.only_in_b),
            "total": total,
            "most_changed": [
                {
                    "name": m.name,
                    "distance": m.distance,
                    "relative": m.relative,
                    "cosine": m.cosine,
                    "share": m.distance**2 / squared if squared else 0.0,
                }
                for m in most
            ],
            "per_layer": [
                {"layer": layer, **_aggregate(group, squared)}
                for layer, group in sorted(by_layer.items(), key=lambda item: _layer_order(item[0]))
            ],
            "per_module_type": [
                {"module_type": name, **_aggregate(group, squared)} for name, group in sorted(by_type.items())
            ],
            "config_changes": {key: list(pair) for key, pair in sorted(self.config_changes.items())},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "modules": [asdict(m) for m in self.modules],
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
            "config_changes": {key: list(pair) for key, pair in sorted(self.config_changes.items())},
            "summary": self.summary(),
        }


def adapter_diff(a: LoraAdapter, b: LoraAdapter) -> AdapterDiff:
    """Per-module norms, distance and cosine of ``a`` and ``b``; a module on one side only counts with the
    other side's norm 0 (distance = its norm, relative 1, cosine None). Raises ``IncompatibleAdapters`` when
    a module has different shapes on the two sides."""
    names = sorted(a.modules.keys() | b.modules.keys())
    # on one thread: each module is ~1 ms of r×r Gram work, which a second thread speeds up by a third
    # but which waits many milliseconds whenever that thread is descheduled on a shared CPU
    with one_thread():
        modules = [_module_diff(name, a.modules.get(name), b.modules.get(name)) for name in names]
    return AdapterDiff(
        modules=modules,
        only_in_a=sorted(a.modules.keys() - b.modules.keys()),
        only_in_b=sorted(b.modules.keys() - a.modules.keys()),
        config_changes=_config_changes(a.config, b.config),
    )


def _module_diff(name: str, ma: LoraModule | None, mb: LoraModule | None) -> ModuleDiff:
    layer, module_type = split_name(name)
    if ma is None or mb is None:
        present = ma if ma is not None else mb
        assert present is not None
        norm = _norm(present)
        norm_a, norm_b = (norm, 0.0) if ma is not None else (0.0, norm)
        return ModuleDiff(name, layer, module_type, norm_a, norm_b, norm, 1.0 if norm > 0 else 0.0, None)
    _check_pair(name, ma, mb)
    if _identical(ma, mb):  # exactly 0, not the QR core's rounding error
        norm = _norm(ma)
        return ModuleDiff(name, layer, module_type, norm, norm, 0.0, 0.0, 1.0 if norm else None)
    device = ma.A.device
    # ΔW_a first: norm1 = ‖ΔW_a‖, distance = ‖ΔW_a − ΔW_b‖ (factors read exactly into fp64 inside)
    c = compare(ma.B, ma.A, mb.B.to(device), mb.A.to(device), scale1=ma.scale, scale2=mb.scale)
    largest = max(c.norm1, c.norm2)
    relative = c.distance / largest if largest > 0 else 0.0
    return ModuleDiff(name, layer, module_type, c.norm1, c.norm2, c.distance, relative, c.cosine)


def difference_adapter(
    a: LoraAdapter, b: LoraAdapter, *, rank: int | None = None
) -> tuple[LoraAdapter, dict[str, Any]]:
    """The adapter of ``ΔW_b − ΔW_a``: applied on top of a base with ``a`` merged, it gives ``b``.

    Exact by default: ``B = [s_b·B_b, −s_a·B_a]``, ``A = [A_b; A_a]``, rank ``r_a + r_b``. With ``rank``,
    each module is compressed to its best rank-``rank`` approximation (SVD of the factored difference) and
    the report gives each module's truncation error, absolute and relative to ``‖ΔW_b − ΔW_a‖``.
    """
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"rank must be a positive integer or None, got {rank!r}")
    modules: dict[str, LoraModule] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name in sorted(a.modules.keys() | b.modules.keys()):
        ma, mb = a.modules.get(name), b.modules.get(name)
        if ma is not None and mb is not None:
            _check_pair(name, ma, mb)
        template = mb if mb is not None else ma
        assert template is not None
        device = template.A.device
        parts = [(mb.B * mb.scale, mb.A)] if mb is not None else []
        if ma is not None:
            parts.append((-ma.scale * ma.B.to(device), ma.A.to(device)))
        B = torch.cat([p[0].float() for p in parts], dim=1)
        A = torch.cat([p[1].float() for p in parts], dim=0)
        entry: dict[str, Any] = {"rank": A.shape[0], "error": 0.0, "relative_error": 0.0}
        if rank is not None:
            svd = factored_svd(B.double(), A.double(), rank=rank)
            B64, A64, relative_error = truncate(svd, rank)
            B, A = B64.float(), A64.float()
            norm = float(torch.linalg.vector_norm(svd.S))
            entry = {
                "rank": A.shape[0],
                "norm": norm,
                "error": float(torch.linalg.vector_norm(svd.S[A.shape[0] :])),
                "relative_error": relative_error,
            }
        modules[name] = LoraModule(
            A=A.contiguous(),
            B=B.contiguous(),
            scale=1.0,
            kind=template.kind,
            transposed_in_base=template.transposed_in_base,
        )
        entries[name] = entry
    if not modules:
        raise IncompatibleAdapters("both adapters are empty; there is no difference to write")
    targets = [b.config.get("target_modules"), a.config.get("target_modules")]
    config = lora_config_for(
        modules,
        target_modules=sorted(set(targets[0]) | set(targets[1]))
        if all(_is_list(t) for t in targets)
        else None,
        template=b.config,
    )
    report = {
        "mode": "exact" if rank is None else "svd",
        "rank": rank,
        "modules": entries,
        "only_in_a": sorted(a.modules.keys() - b.modules.keys()),
        "only_in_b": sorted(b.modules.keys() - a.modules.keys()),
        "max_relative_error": max(e["relative_error"] for e in entries.values()),
    }
    return LoraAdapter(modules=modules, config=config), report


def plot_heatmap(
    diff: AdapterDiff, path: Path, *, names: tuple[str, str] = ("A", "B"), scale: str = "max"
) -> None:
    """Save :func:`heatmap_figure` as a PNG at ``path``."""
    heatmap_figure(diff, names=names, scale=scale).savefig(Path(path), format="png")


def heatmap_figure(diff: AdapterDiff, *, names: tuple[str, str] = ("A", "B"), scale: str = "max") -> Figure:
    """The relative distance per module: one row per layer, one column per module type (modules outside
    numbered layers, such as embeddings or ``lm_head``, in a last "other" row), a colorbar, the value in
    each cell (an exact 0 as ``0``), "A only"/"B only" for modules on one side, grey for modules neither
    has. ``names`` (the refs compared) title it; ``scale`` is the colour range: ``max``, 0 to this plot's
    largest value, or ``fixed``, 0 to √2 (two unrelated updates of equal norm) for every plot, so plots
    compare; larger values (opposed updates, up to 2) take the top colour."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    layers = sorted({m.layer for m in diff.modules if m.layer is not None})
    rows: list[int | None] = [*layers, *([None] if any(m.layer is None for m in diff.modules) else [])]
    columns = sorted({m.module_type for m in diff.modules}, key=lambda t: (_type_rank(diff, t), t))
    grid = torch.full((max(len(rows), 1), max(len(columns), 1)), float("nan"), dtype=torch.float64)
    labels: dict[tuple[int, int], str] = {}
    only_a, only_b = set(diff.only_in_a), set(diff.only_in_b)
    for m in diff.modules:
        i, j = rows.index(m.layer), columns.index(m.module_type)
        grid[i, j] = m.relative
        labels[i, j] = "A only" if m.name in only_a else "B only" if m.name in only_b else _number(m.relative)
    values = grid[~grid.isnan()]
    largest = float(values.max()) if values.numel() else 0.0
    top = FIXED_SCALE if scale == "fixed" else largest if largest > 0 else 1.0

    height = min(max(4.0, 0.34 * len(rows) + 2.6), 60.0)
    width = max(6.5, 1.15 * len(columns) + 3.0)
    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(
        grid.numpy(),
        cmap=_colormap(),
        norm=Normalize(vmin=0.0, vmax=top),
        aspect="auto",
        interpolation="none",
    )
    axes.set_xticks(range(len(columns)), [c.replace(".", ".\n", 1) for c in columns], fontsize=9)
    axes.set_yticks(range(len(rows)), ["other" if r is None else str(r) for r in rows], fontsize=9)
    axes.tick_params(axis="x", top=True, bottom=False, labeltop=True, labelbottom=False)
    axes.set_xticks([x - 0.5 for x in range(1, len(columns))], minor=True)
    axes.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    axes.grid(which="minor", color="white", linewidth=1.0)
    axes.tick_params(which="minor", length=0)
    axes.set_ylabel("layer")
    axes.set_xlabel("module type    (grey: in neither adapter)")
    if len(rows) * len(columns) <= _ANNOTATE_CELLS:
        for (i, j), text in labels.items():
            dark = float(grid[i, j]) / top > 0.6
            axes.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    colorbar = figure.colorbar(
        image, ax=axes, shrink=0.9, extend="max" if largest > top else "neither", format=FuncFormatter(_tick)
    )
    colorbar.set_label(
        "relative distance (0: identical)" + ("\nfixed scale 0..√2" if scale == "fixed" else "")
    )
    total = diff.summary(top=0)["total"]
    cosine = "n/a" if total["cosine"] is None else _number(total["cosine"], ".3f")
    figure.suptitle(
        f"A: {names[0]}  vs  B: {names[1]}\n"
        "per module: ‖ΔW_B − ΔW_A‖ / max(‖ΔW_A‖, ‖ΔW_B‖)\n"
        f"whole adapter: relative {_number(total['relative'], '.3g')}, cosine {cosine}; "
        f"{len(diff.only_in_a)} modules only in A, {len(diff.only_in_b)} only in B",
        fontsize=11,
    )
    return figure


def _number(value: float, spec: str = ".2g") -> str:
    """``value`` formatted, but an exact zero (either sign) as ``0``, never ``0.00`` or ``-0``."""
    return "0" if value == 0 else format(value, spec)


def _tick(value: float, _position: float | None) -> str:
    return _number(value, ".3g")


def split_name(name: str) -> tuple[int | None, str]:
    """``model.layers.3.self_attn.q_proj`` → ``(3, "self_attn.q_proj")``; a name without a numeric
    component (``lm_head``, ``model.embed_tokens``) has no layer and is its own type."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit() and i + 1 < len(parts):
            return int(part), ".".join(parts[i + 1 :])
    return None, name


def _norm(module: LoraModule) -> float:
    """‖s·BA‖_F from the fp64 r×r Gram matrices of the factors."""
    B, A = module.B.double(), module.A.double()
    return math.sqrt(max(float(frobenius_inner(B, A, B, A)), 0.0)) * abs(module.scale)


def _identical(a: LoraModule, b: LoraModule) -> bool:
    """The same factors, bit for bit, and the same scale (an unchanged module of a new version)."""
    return a.scale == b.scale and all(
        x.dtype == y.dtype and torch.equal(x, y.to(x.device)) for x, y in ((a.A, b.A), (a.B, b.B))
    )


def _check_pair(name: str, a: LoraModule, b: LoraModule) -> None:
    if a.shape != b.shape or a.kind != b.kind or a.transposed_in_base != b.transposed_in_base:
        raise IncompatibleAdapters(
            f"module {name!r} is {a.kind} {a.shape} (transposed_in_base={a.transposed_in_base}) in the first "
            f"adapter but {b.kind} {b.shape} (transposed_in_base={b.transposed_in_base}) in the second; "
            "are the adapters for different base models?"
        )


def _aggregate(group: list[ModuleDiff], total_squared: float | None = None) -> dict[str, Any]:
    """Frobenius totals over modules: norms and distance add in squares; inner products add."""
    norm_a = math.sqrt(sum(m.norm_a**2 for m in group))
    norm_b = math.sqrt(sum(m.norm_b**2 for m in group))
    distance = math.sqrt(sum(m.distance**2 for m in group))
    inner = sum(m.cosine * m.norm_a * m.norm_b for m in group if m.cosine is not None)
    largest = max(norm_a, norm_b)
    result: dict[str, Any] = {
        "modules": len(group),
        "norm_a": norm_a,
        "norm_b": norm_b,
        "distance": distance,
        "relative": distance / largest if largest > 0 else 0.0,
        "cosine": max(-1.0, min(1.0, inner / (norm_a * norm_b))) if norm_a > 0 and norm_b > 0 else None,
    }
    if total_squared is not None:
        result["share"] = distance**2 / total_squared if total_squared else 0.0
    return result


def _config_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ; a missing key counts as null, so versions adding null fields stay quiet."""
    return {key: (a.get(key), b.get(key)) for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)}


def _layer_order(layer: int | None) -> tuple[bool, int]:
    return layer is None, layer if layer is not None else 0


def _type_rank(diff: AdapterDiff, module_type: str) -> int:
    """Columns of modules inside numbered layers first (alphabetical), those of the "other" row last."""
    if all(m.layer is None for m in diff.modules if m.module_type == module_type):
        return 1
    return 0


def _is_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _colormap() -> Any:
    from matplotlib import colormaps

    return colormaps["YlOrRd"].with_extremes(bad="#d9d9d9")
