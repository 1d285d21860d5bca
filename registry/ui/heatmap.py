"""A diff job's report as the compare page's heatmap: one row per layer, one column per module type (modules
outside numbered layers, such as ``lm_head``, in a last "other" row), each module a cell coloured on a
10-step scale (``heat-0`` … ``heat-9``) by its relative distance or its cosine.

It reads the report's JSON (see :mod:`registry.compute.diff`), never torch: the server runs without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import InvalidInput

METRICS = ("relative", "cosine")
LEVELS = 10
FIXED_SCALE = math.sqrt(2)  # a diff's scale=fixed: the relative distance of two unrelated updates


def number(value: float | None, spec: str = ".3g") -> str:
    """``value`` for people; an exact zero as ``0``, no value as ``n/a``."""
    if value is None:
        return "n/a"
    return "0" if value == 0 else format(value, spec)


@dataclass(frozen=True)
class Cell:
    """One module of the diff, and its colour step (None: no value of this metric, e.g. the cosine of a
    module one side lacks)."""

    name: str
    layer: int | None
    module_type: str
    distance: float
    relative: float
    cosine: float | None
    side: str | None  # "A only" or "B only"
    level: int | None

    @property
    def title(self) -> str:
        """What hovering the cell says."""
        where = self.module_type if self.layer is None else f"layer {self.layer} {self.module_type}"
        measured = {"distance": self.distance, "relative": self.relative, "cosine": self.cosine}
        values = ", ".join(f"{name} {number(value)}" for name, value in measured.items())
        return f"{where}: {values}" + (f" ({self.side})" if self.side else "")


@dataclass(frozen=True)
class Row:
    layer: int | None  # None: the "other" row
    cells: list[Cell | None]  # one per column; None where neither adapter has that module
    total: Mapping[str, Any] | None  # the summary's totals of this layer


@dataclass(frozen=True)
class Grid:
    metric: str
    columns: list[str]
    rows: list[Row]
    column_totals: list[Mapping[str, Any] | None]  # the summary's totals of each module type
    top: float  # the value of the darkest step: a relative distance, or 1 for cosines


def grid(report: Mapping[str, Any], *, metric: str = "relative", scale: str = "max") -> Grid:
    """The heatmap of ``report`` (a diff job's ``result.report``). ``metric``: colour by ``relative``
    distance (``scale`` ``max``: 0 to the largest value here; ``fixed``: 0 to √2, as the job's PNG) or by
    ``cosine`` (1: the same direction, lightest; −1: opposed, darkest)."""
    if metric not in METRICS:
        raise InvalidInput(f"metric must be relative or cosine, not {metric!r}")
    modules = report["modules"]
    only_a, only_b = set(report["only_in_a"]), set(report["only_in_b"])
    layers = sorted({m["layer"] for m in modules if m["layer"] is not None})
    rows: list[int | None] = [*layers, *([None] if any(m["layer"] is None for m in modules) else [])]
    in_layers = {m["module_type"] for m in modules if m["layer"] is not None}
    columns = sorted({m["module_type"] for m in modules}, key=lambda t: (t not in in_layers, t))
    if metric == "cosine":
        top = 1.0
    elif scale == "fixed":
        top = FIXED_SCALE
    else:
        top = max((m["relative"] for m in modules), default=0.0) or 1.0
    cells: dict[tuple[int | None, str], Cell] = {}
    for m in modules:
        side = "A only" if m["name"] in only_a else "B only" if m["name"] in only_b else None
        value = m["relative"] if metric == "relative" else _turn(m["cosine"])
        cells[m["layer"], m["module_type"]] = Cell(
            name=m["name"],
            layer=m["layer"],
            module_type=m["module_type"],
            distance=m["distance"],
            relative=m["relative"],
            cosine=m["cosine"],
            side=side,
            level=None if value is None else min(LEVELS - 1, math.floor(value / top * LEVELS)),
        )
    summary = report["summary"]
    per_layer = {entry["layer"]: entry for entry in summary["per_layer"]}
    per_type = {entry["module_type"]: entry for entry in summary["per_module_type"]}
    return Grid(
        metric=metric,
        columns=columns,
        rows=[
            Row(layer, [cells.get((layer, column)) for column in columns], per_layer.get(layer))
            for layer in rows
        ],
        column_totals=[per_type.get(column) for column in columns],
        top=top,
    )


def _turn(cosine: float | None) -> float | None:
    """A cosine as a distance-like fraction: 0 for 1 (same direction), 1 for −1 (opposed)."""
    return None if cosine is None else (1.0 - cosine) / 2.0
