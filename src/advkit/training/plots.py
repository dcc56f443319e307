"""Training-curve plot for the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advkit.training.checkpoint import atomic_write


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Loss (left) and accuracies (right) against epoch, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    for key, label in [("train_acc", "train (on training inputs)"), ("val_clean", "val clean"),
                       ("val_pgd", "val PGD")]:  # fmt: skip
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            right.plot(epochs, values, marker="o", label=label)
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1)
    right.grid(alpha=0.3)
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
