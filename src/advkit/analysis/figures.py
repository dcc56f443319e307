"""Figure helpers shared by the analyses: matplotlib on its Agg canvas, no pyplot.

Figures are built with :func:`new_figure` (no global backend switch, so importing advkit never
touches the user's matplotlib configuration), drawn as PNG with :func:`png_bytes` and written after
the results they illustrate (or at once with :func:`save_figure`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advkit.files import write_bytes

#: Resolution of written figures (dots per inch).
DPI = 110


def new_figure(size: tuple[float, float]) -> Any:
    """A matplotlib Figure of ``size`` inches with constrained layout, on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_and_axes(width: float, height: float, ncols: int = 1) -> tuple[Any, list]:
    """A :func:`new_figure` of ``width`` x ``height`` inches and its row of ``ncols`` axes."""
    fig = new_figure((width, height))
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def epoch_axis(axes: Any) -> None:
    """Epochs are whole numbers: ticks on them only."""
    from matplotlib.ticker import MaxNLocator

    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def layer_ticks(axes: Any, names: list[str]) -> None:
    """Module paths as slanted tick labels under their bars."""
    axes.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize="small")


def grouped_bars(axes: Any, series: dict[str, list[float]]) -> None:
    """Several runs' bars side by side at each position 0, 1, ...: ``series`` maps a legend
    label to one value per position."""
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        positions = [j - 0.4 + width * (i + 0.5) for j in range(len(values))]
        axes.bar(positions, values, width=width, label=label)


def save_figure(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` as a PNG at ``path`` (its folder created), atomically."""
    return write_bytes(path, png_bytes(figure))


def png_bytes(figure: Any) -> bytes:
    """``figure`` as PNG, drawn in memory (written later, after the results it illustrates)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png")
    return buffer.getvalue()


def show_image(axes: Any, image: Tensor, *, cmap: str = "gray") -> None:
    """An image (C, H, W) in [0, 1] without ticks: grey for one channel, RGB for three."""
    image = image.detach().cpu().float().clamp(0, 1)
    if image.shape[0] == 1:
        axes.imshow(image[0].numpy(), cmap=cmap, vmin=0, vmax=1)
    else:
        axes.imshow(image.permute(1, 2, 0).numpy())
    axes.set_xticks([])
    axes.set_yticks([])


def class_name(label: Tensor | int, class_names: Sequence[str] | None) -> str:
    """The name of class ``label`` when the model has names, else its index."""
    index = int(torch.as_tensor(label))
    if class_names and 0 <= index < len(class_names):
        return str(class_names[index])
    return str(index)


def image_grid(
    cells: Sequence[Sequence[Tensor]],
    *,
    captions: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    borders: Sequence[Sequence[str | None]] | None = None,
    title: str | None = None,
    cell_inches: float = 1.1,
) -> Any:
    """A grid of images (C, H, W) in [0, 1], all of one size, drawn as one mosaic on one axes
    (fast: one image, not one axes per cell), each with a caption above it, an optional
    coloured frame (a matplotlib colour name) and a label per row."""
    import numpy as np
    from matplotlib.colors import to_rgb

    rows, columns = len(cells), max(len(row) for row in cells)
    height, width = cells[0][0].shape[-2:]
    pad = max(2, height // 9)  # the gap around each cell; its frame takes a third of it
    frame, band = max(1, pad // 3), (height * 3) // 5 if captions else pad
    cell_h, cell_w = height + band + pad, width + 2 * pad
    canvas = np.ones((rows * cell_h + pad, columns * cell_w, 3))
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            top, left = r * cell_h + band, c * cell_w + pad
            color = borders[r][c] if borders else None
            if color:
                box = (
                    slice(top - frame, top + height + frame),
                    slice(left - frame, left + width + frame),
                )
                canvas[box] = to_rgb(color)
            pixels = image.detach().cpu().float().clamp(0, 1)
            pixels = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels
            canvas[top : top + height, left : left + width] = pixels.permute(1, 2, 0).numpy()
    inches = cell_inches / cell_w
    extra = 0.6 if row_labels else 0.0
    figure = new_figure(
        (canvas.shape[1] * inches + extra, canvas.shape[0] * inches + (0.35 if title else 0.1))
    )
    axes = figure.add_subplot()
    axes.imshow(canvas, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks(
        [r * cell_h + band + height / 2 for r in range(rows)] if row_labels else [],
        list(row_labels or []),
        fontsize=7,
    )
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.tick_params(length=0)
    for r, row in enumerate(captions or []):
        for c, text in enumerate(row):
            axes.text(c * cell_w + cell_w / 2, r * cell_h + band - pad - 0.5, text, fontsize=6,
                      ha="center", va="bottom")  # fmt: skip
    if title:
        axes.set_title(title, fontsize=9)
    return figure
