"""Training-curve plot for the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from advkit.files import atomic_write_stream

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
    atomic_write_stream(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
    plt.close(fig)


def curves_figure(history: list[dict[str, Any]], title: str = "") -> Figure:
    """The figure ``plot_curves`` saves: epochs on whole-number ticks, a marker on every point.

    Loss (left), accuracies (middle: training, validation and the tracked samples, dashed) and,
    when the run tracked it, GradAlign's cosine on the validation images (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    align = any("val_grad_align" in r for r in history)
    fig, axes_row = plt.subplots(1, 3 if align else 2, figsize=(15 if align else 10, 4))
    left, right = axes_row[0], axes_row[1]
    left.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss")
    left.set_ylabel("loss")
    for key, label, style, color in _ACCURACY_LINES:
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            right.plot(epochs, values, marker="o", linestyle=style, color=color, label=label)
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1)
    right.grid(alpha=0.3)
    if align:
        cosine = axes_row[2]
        cosine.plot(epochs, [r.get("val_grad_align") for r in history], marker="o",
                    color="tab:purple", label="val gradient alignment")  # fmt: skip
        cosine.set_ylabel("cos(grad at x, grad at x + eta)")
        cosine.set_ylim(min(0.0, *(r.get("val_grad_align", 0.0) for r in history)), 1.02)
        cosine.grid(alpha=0.3)
    for axes in axes_row:
        _epoch_axis(axes, epochs)
        axes.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


#: The accuracy panel's lines: (metrics key, legend, line style, colour: clean blue, PGD red,
#: the split by the style); absent keys are not drawn.
_ACCURACY_LINES = [
    ("train_acc", "train (on training inputs)", "-", "tab:green"),
    ("val_clean", "val clean", "-", "tab:blue"),
    ("val_pgd", "val PGD", "-", "tab:red"),
    ("train_sample_clean", "train sample clean", "--", "tab:blue"),
    ("train_sample_pgd", "train sample PGD", "--", "tab:red"),
    ("test_sample_clean", "test sample clean", ":", "tab:blue"),
    ("test_sample_pgd", "test sample PGD", ":", "tab:red"),
]


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
