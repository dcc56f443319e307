"""Certified accuracy against radius, one step curve per certification (several sigmas or runs
side by side), each ending at its radius cap (beyond it every certified accuracy is 0 by
construction of n and alpha, not because of the model): a dotted line marks each cap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from advkit.evaluation.plots import _figure, _png


@dataclass(frozen=True)
class Curve:
    """One certification's per-sample radii (0 where wrong or abstaining) and its cap."""

    label: str
    radii: np.ndarray
    cap: float

    @classmethod
    def of(cls, label: str, radii: np.ndarray, correct: np.ndarray, cap: float) -> Curve:
        return cls(label, np.where(correct, radii, -1.0), cap)

    def accuracy(self, at: np.ndarray) -> np.ndarray:
        """Certified accuracy at each radius of ``at``: the fraction right and certified there."""
        ordered = np.sort(self.radii)
        return 1.0 - np.searchsorted(ordered, at, side="left") / max(len(ordered), 1)


def certified_png(curves: Sequence[Curve], *, title: str | None = None) -> bytes:
    """The curves as a PNG: certified accuracy (%) against L2 radius (pixel units)."""
    figure, canvas = _figure((5.5, 3.8))
    axes = figure.add_subplot()
    right = max([curve.cap for curve in curves] + [0.1]) * 1.05
    grid = np.linspace(0.0, right, 400)
    for curve in curves:
        line = axes.step(grid, 100 * curve.accuracy(grid), where="post", label=curve.label)[0]
        axes.axvline(curve.cap, color=line.get_color(), linestyle=":", linewidth=1)
    axes.set_xlabel("L2 radius (pixel units, [0,1] images)")
    axes.set_ylabel("certified accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_xlim(0, right)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, title="dotted: largest certifiable radius", title_fontsize=7)
    if title:
        axes.set_title(title, fontsize=9)
    return _png(canvas)
