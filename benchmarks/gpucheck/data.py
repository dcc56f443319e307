"""The check's own data: a small synthetic ``.npz`` (the CPU smoke run, or a GPU machine without
CIFAR-10) and a folder of PNGs for the streamed image-folder path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Class names of the image folder (advkit reads root/{train,test}/<class>/*.png).
FOLDER_CLASSES = ("ant", "bee", "cat")


def _images(rng: np.random.Generator, count: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, (count, *shape), dtype=np.uint8)


def write_npz(
    path: Path, *, train: int, test: int, shape: tuple[int, ...], classes: int = 10
) -> Path:
    """``x_train/y_train/x_test/y_test`` of random uint8 images (NHW or NHWC), image i in class
    i mod ``classes``, as ``advkit train --dataset npz --data-dir PATH`` reads them."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        x_train=_images(rng, train, shape), y_train=np.arange(train) % classes,
        x_test=_images(rng, test, shape), y_test=np.arange(test) % classes,
    )  # fmt: skip
    return path


def write_image_folder(root: Path, *, train: int, test: int, size: int, rgb: bool) -> Path:
    """``root/{train,test}/<class>/NNNN.png`` of random pixels, image i in class i mod 3."""
    from PIL import Image

    rng = np.random.default_rng(1)
    shape = (size, size, 3) if rgb else (size, size)
    for split, count in (("train", train), ("test", test)):
        for i in range(count):
            path = root / split / FOLDER_CLASSES[i % len(FOLDER_CLASSES)] / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_images(rng, 1, shape)[0]).save(path)
    return root
