"""Tiny image folders of PNGs written with PIL, for the tests of the streamed data path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(
    root: Path,
    n_train: int = 40,
    n_test: int = 8,
    *,
    size: tuple[int, int] = (28, 28),
    mode: str = "L",
    classes: tuple[str, ...] = ("ant", "bee", "cat"),
    seed: int = 0,
) -> Path:
    """``root/{train,test}/<class>/NNNN.png``: random pixels, image i in class i mod classes."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            path = root / split / classes[i % len(classes)] / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return root
