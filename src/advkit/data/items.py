"""What the streaming path reads item by item: an image folder's files as a Dataset, and any
map-style ``Dataset`` of ``(image, label)`` checked item by item and read a whole batch at a time.

Items are checked where they are read (often in a DataLoader worker): an image of another shape
or dtype, a label that changed since it was first read, or a failing user Dataset becomes a
one-line :class:`~advkit.data.errors.DataError`, carried back from a worker as an
:class:`ItemFailure`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from advkit.data.errors import DataError
from advkit.data.labels import class_index
from advkit.data.readers import decode_image


class ImageFiles(Dataset):
    """An image folder's files as a map-style Dataset: item ``i`` is ``(uint8 (C, H, W) array,
    label)``, decoded when asked, by the decoder of the in-memory reader (same pixels)."""

    def __init__(
        self, items: Sequence[tuple[Path, int]], mode: str, size: tuple[int, int], root: Path
    ) -> None:
        self.items = list(items)
        self.mode = mode
        self.size = size
        self.root = root

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        path, label = self.items[i]
        return decode_image(path, self.mode, self.size), label

    def read_into(self, out: np.ndarray, indices: Sequence[int]) -> None:
        """Decode the items at ``indices`` into ``out`` (len(indices), C, H, W), uint8."""
        for k, i in enumerate(indices):
            out[k] = decode_image(self.items[i][0], self.mode, self.size)

    def identity(self, indices: Tensor) -> str:
        """A checksum of the files at ``indices`` in order: their names under the folder's root
        (so a moved folder is the same data), byte sizes and labels; no pixels."""
        digest = hashlib.sha256()
        for i in indices.tolist():
            path, label = self.items[i]
            name = os.path.relpath(path, self.root)
            digest.update(f"{name}\t{path.stat().st_size}\t{label}\n".encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ItemFailure:
    """A worker's error, carried back as a value so the main process raises it in one line."""

    message: str


def as_image(image: Any, where: str) -> Tensor:
    """One item's image as a (C, H, W) tensor: uint8 as it is, floats as float32 in [0, 1]."""
    if isinstance(image, Image.Image):
        pixels = np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"))
        image = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if isinstance(image, np.ndarray) and _channels_last(image.shape):  # numpy's own layout
        image = image.transpose(2, 0, 1)
    if isinstance(image, np.ndarray):  # torch shares only writable, contiguous memory
        writable = image.flags.writeable and image.flags.c_contiguous
        image = torch.from_numpy(image if writable else np.array(image))
    if not isinstance(image, Tensor):
        raise DataError(
            f"{where} is a {type(image).__name__}; return the image as a tensor, numpy array "
            "or PIL image"
        )
    if image.dim() == 2:
        image = image[None]
    if _channels_last(tuple(image.shape)):
        raise DataError(
            f"{where} is a {tuple(image.shape)} tensor, which looks channels-last (H, W, C): "
            "permute it to (C, H, W), e.g. image.permute(2, 0, 1) (torchvision's ToTensor does)"
        )
    if image.dim() != 3:
        raise DataError(
            f"{where} has shape {tuple(image.shape)}; return (C, H, W) or (H, W) images"
        )
    if image.dtype == torch.uint8:
        return image
    if not image.is_floating_point():
        raise DataError(
            f"{where} has dtype {image.dtype}; return uint8 (0..255) or float in [0, 1] images"
        )
    image = image.to(torch.float32)
    if image.numel() and not (torch.isfinite(image).all() and 0 <= image.min() <= image.max() <= 1):
        raise DataError(
            f"{where} holds values in {float(image.min()):.4g}..{float(image.max()):.4g}; float "
            "images must lie in [0, 1] (divide 0-255 values by 255)"
        )
    return image


def _channels_last(shape: tuple[int, ...]) -> bool:
    """An (H, W, C) image: last axis 1 or 3 channels, first not."""
    return len(shape) == 3 and shape[-1] in (1, 3) and shape[0] not in (1, 3)


class Items(Dataset):
    """A source as the DataLoader workers read it: a list of source indices in, one collated
    ``(images, labels)`` batch out (or a :class:`ItemFailure`)."""

    def __init__(
        self, dataset: Any, labels: Tensor, image_shape: tuple[int, ...], dtype: torch.dtype,
        name: str,
    ) -> None:  # fmt: skip
        self.dataset = dataset
        self.labels = labels
        self.image_shape = tuple(image_shape)
        self.dtype = dtype
        self.name = name

    def __len__(self) -> int:
        return len(self.labels)

    def item(self, i: int) -> Tensor:
        where = f"item {i} of {self.name}"
        try:
            image, label = self.dataset[i]
        except DataError:
            raise
        except Exception as exc:  # a user Dataset's own failure, reported in one line
            raise DataError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        image = as_image(image, where)
        if tuple(image.shape) != self.image_shape or image.dtype != self.dtype:
            raise DataError(
                f"{where} is a {image.dtype} {tuple(image.shape)} image but the others are "
                f"{self.dtype} {self.image_shape}; every image must share one shape and dtype"
            )
        label = class_index(label, where)
        if label != int(self.labels[i]):
            raise DataError(
                f"{where} has label {label} but {int(self.labels[i])} was read before: the "
                "dataset must return the same item for an index every time"
            )
        return image

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.item(i), self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor] | ItemFailure:
        images = torch.empty((len(indices), *self.image_shape), dtype=self.dtype)
        try:
            if isinstance(self.dataset, ImageFiles):  # decoded straight into the batch
                self.dataset.read_into(images.numpy(), indices)
            else:
                for k, i in enumerate(indices):
                    images[k] = self.item(i)
        except DataError as error:
            return ItemFailure(str(error))
        return images, self.labels[torch.as_tensor(indices, dtype=torch.long)]
