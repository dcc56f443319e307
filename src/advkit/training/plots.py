"""Training-curve plot for the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from advkit.training.checkpoint import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Up to this many epochs every epoch gets its own tick; beyond, a few whole-number ticks.
TICK_EVERY_EPOCH = 12


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Loss (left) and accuracies (right) against epoch, saved as PNG."""
    if not history:
        return
    import matplotlib.pyplot as plt

    fig = curves_figure(history, title)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def curves_figure(history: list[dict[str, Any]], title: str = "") -> Figure:
    """The figure ``plot_curves`` saves: epochs on whole-number ticks, a marker on every point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss")
    left.set_ylabel("loss")
    for key, label in [("train_acc", "train (on training inputs)"), ("val_clean", "val clean"),
                       ("val_pgd", "val PGD")]:  # fmt: skip
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            right.plot(epochs, values, marker="o", label=label)
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1)
    right.grid(alpha=0.3)
    for axes in (left, right):
        _epoch_axis(axes, epochs)
        axes.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _epoch_axis(axes: Axes, epochs: list[int]) -> None:
    """Epochs are whole numbers: ticks on them only, and half an epoch of room at either end
    (matplotlib's default for a single point is a 0.96-1.04 axis of fractional ticks)."""
    from matplotlib.ticker import MaxNLocator

    first, last = min(epochs), max(epochs)
    axes.set_xlabel("epoch")
    axes.set_xlim(first - 0.5, last + 0.5)
    if last - first < TICK_EVERY_EPOCH:
        axes.set_xticks(range(first, last + 1))
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
