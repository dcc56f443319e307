"""curves.png: epochs on whole-number ticks, whatever the number of epochs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from advkit.training.plots import curves_figure, plot_curves


def history(epochs: int) -> list[dict]:
    return [
        {"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.5, "val_clean": 0.6, "val_pgd": 0.3}
        for e in range(1, epochs + 1)
    ]


def visible_ticks(axes) -> list[float]:
    low, high = axes.get_xlim()
    return [t for t in axes.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("epochs", [1, 2, 7, 48])
def test_epoch_ticks_are_whole_numbers_inside_the_epochs(epochs):
    fig = curves_figure(history(epochs))
    try:
        for axes in fig.axes:
            ticks = visible_ticks(axes)
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            assert min(ticks) >= 1 and max(ticks) <= epochs
            low, high = axes.get_xlim()
            assert low < 1 and high > epochs  # the first and last points are not on the edge
    finally:
        plt.close(fig)


def test_one_epoch_is_one_tick_with_a_marker():
    """A one-epoch run used to get ticks at 0.96, 0.98, ..., 1.04 and no visible line."""
    fig = curves_figure(history(1))
    try:
        for axes in fig.axes:
            assert visible_ticks(axes) == [1.0]
            assert axes.get_xlim() == pytest.approx((0.5, 1.5))
            assert all(line.get_marker() not in (None, "None", "") for line in axes.get_lines())
    finally:
        plt.close(fig)


def test_plot_curves_writes_a_png(tmp_path):
    plot_curves(history(1), tmp_path / "curves.png", title="t")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
