"""PNG figures of an evaluation: robust accuracy against eps, and example adversarial images.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so
importing advkit never touches the user's matplotlib configuration.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advkit.evaluation.report import NORM_NAMES
from advkit.files import write_bytes


def plot_sweep(
    path: str | os.PathLike[str],
    points: Sequence[tuple[float, float]],
    *,
    norm: str,
    title: str | None = None,
) -> Path:
    """:func:`sweep_png` written to ``path`` (atomically)."""
    return write_bytes(path, sweep_png(points, norm=norm, title=title))


def sweep_png(
    points: Sequence[tuple[float, float]], *, norm: str, title: str | None = None
) -> bytes:
    """Robust accuracy (PGD-20, %) against eps (pixel units) as PNG; eps = 0 is clean accuracy."""
    figure, canvas = _figure((5, 3.5))
    axes = figure.add_subplot()
    eps_values = [eps for eps, _ in sorted(points)]
    accuracies = [100 * acc for _, acc in sorted(points)]
    axes.plot(eps_values, accuracies, marker="o")
    axes.set_xlabel(f"{NORM_NAMES.get(norm, norm)} eps (pixel units, inputs in [0, 1])")
    axes.set_ylabel("robust accuracy under PGD-20 (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title)
    return _png(canvas)


def plot_examples(path: str | os.PathLike[str], *args: Tensor, **kwargs: Any) -> Path:
    """:func:`examples_png` (same arguments after ``path``) written to ``path`` (atomically)."""
    return write_bytes(path, examples_png(*args, **kwargs))


def examples_png(
    clean: Tensor,
    adversarial: Tensor,
    labels: Tensor,
    clean_predictions: Tensor,
    adversarial_predictions: Tensor,
    *,
    class_names: Sequence[str] | None = None,
    attack: str = "attack",
) -> bytes:
    """A grid as PNG: clean images (true label, prediction), adversarial images (prediction) and
    the perturbation amplified to the full range and centered at 0.5 (grey means unchanged)."""
    count = len(clean)
    if count == 0:
        raise ValueError("no examples to plot")
    figure, canvas = _figure((1.6 * count + 0.8, 5.4))
    delta = (adversarial - clean).detach().cpu().float()
    scale = delta.flatten(1).abs().amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    perturbation = 0.5 + 0.5 * delta / scale
    names = [_name(label, class_names) for label in labels]
    clean_names = [_name(label, class_names) for label in clean_predictions]
    adversarial_names = [_name(label, class_names) for label in adversarial_predictions]
    rows = [
        ("clean", clean, [f"true {t}\npred {p}" for t, p in zip(names, clean_names, strict=True)]),
        (attack, adversarial, [f"pred {p}" for p in adversarial_names]),
        ("perturbation\n(amplified)", perturbation, [f"x{0.5 / float(s):.0f}" for s in scale]),
    ]
    for row, (row_name, images, captions) in enumerate(rows):
        for i in range(count):
            axes = figure.add_subplot(3, count, row * count + i + 1)
            _show(axes, images[i])
            axes.set_title(captions[i], fontsize=8)
            if i == 0:
                axes.set_ylabel(row_name, fontsize=9)
    return _png(canvas)


def _figure(size: tuple[float, float]) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    return figure, FigureCanvasAgg(figure)


def _png(canvas: Any) -> bytes:
    """The canvas's figure as PNG bytes: drawn in memory, written by the caller where it says."""
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def _show(axes: Any, image: Tensor) -> None:
    image = image.detach().cpu().float().clamp(0, 1)
    if image.shape[0] == 1:
        axes.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        axes.imshow(image.permute(1, 2, 0).numpy())
    axes.set_xticks([])
    axes.set_yticks([])


def _name(label: Tensor | int, class_names: Sequence[str] | None) -> str:
    index = int(torch.as_tensor(label))
    if class_names and 0 <= index < len(class_names):
        return str(class_names[index])
    return str(index)
