"""Image folders: ``train/<class>/*.png`` and ``test/<class>/*.png`` (PNG or JPEG)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from advkit.data.errors import DataError, DataNotFoundError
from advkit.data.readers.common import ArrayPair, Splits

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_GRAYSCALE_MODES = frozenset({"1", "L", "LA"})


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _split_dir(root: Path, split: str) -> Path:
    folder = root / split
    if not folder.is_dir():
        raise DataNotFoundError(
            f"{folder} does not exist: an image folder dataset needs {root}/train/<class>/*.png "
            f"and {root}/test/<class>/*.png (PNG or JPEG)."
        )
    return folder


def image_folder_classes(root: Path) -> list[str]:
    """Class names of an image folder dataset: the sorted subfolder names of ``root/train``."""
    classes = [p.name for p in _subfolders(_split_dir(root, "train"))]
    if not classes:
        raise DataError(f"{root / 'train'} has no class subfolders; put images in train/<class>/")
    return classes


def _list_split(root: Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    index = {name: i for i, name in enumerate(classes)}
    items: list[tuple[Path, int]] = []
    for folder in _subfolders(_split_dir(root, split)):
        if folder.name not in index:
            raise DataError(
                f"{folder} is a class that {root / 'train'} does not have; the test classes must "
                "be among the training classes"
            )
        files = _image_files(folder)
        if not files:
            raise DataError(f"{folder} holds no PNG or JPEG images; add some or remove the folder")
        items += [(f, index[folder.name]) for f in files]
    if not items:
        raise DataError(f"{root / split} holds no images; put them in {split}/<class>/*.png")
    return items


#: What ``Image.open`` tries: only the formats of ``IMAGE_SUFFIXES`` (a third faster to open).
_FORMATS = ("PNG", "JPEG")


def _open_image(path: Path) -> Image.Image:
    try:
        return Image.open(path, formats=_FORMATS)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is not a readable image ({exc})") from exc


def decode_image(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image as uint8 (C, H, W) in ``mode`` ("L" or "RGB"); ``size`` is its (W, H).

    The one decoder of image folders: the in-memory reader and the streaming dataset both call
    it, so both give the same pixels."""
    with _open_image(path) as im:
        if im.size != size:
            raise DataError(
                f"{path} is {im.size[0]}x{im.size[1]} but the folder's images are "
                f"{size[0]}x{size[1]}; all images must share one size (resize them first)"
            )
        try:
            pixels = np.asarray(im if im.mode == mode else im.convert(mode))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is truncated or corrupt ({exc})") from exc
    return pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)


@dataclass(frozen=True)
class ImageFolderIndex:
    """An image folder listed and its headers read, nothing decoded.

    ``train``/``test`` are (file, label) in the order every reader uses (classes sorted, files
    sorted within a class); ``mode`` is "L" when every image is grayscale, else "RGB"; ``size``
    is the images' common (W, H)."""

    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    mode: str
    size: tuple[int, int]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the decoded images."""
        return (1 if self.mode == "L" else 3, self.size[1], self.size[0])


def index_image_folder(root: Path) -> ImageFolderIndex:
    """List ``root/{train,test}/<class>/`` and read every image's header (size and mode, no
    pixels: tens of microseconds a file), refusing folders whose images differ in size."""
    classes = image_folder_classes(root)
    splits = {split: _list_split(root, split, classes) for split in ("train", "test")}
    first: tuple[Path, tuple[int, int]] | None = None
    grayscale = True
    for path, _ in splits["train"] + splits["test"]:
        with _open_image(path) as im:
            size, mode = im.size, im.mode
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise DataError(
                f"{path} is {size[0]}x{size[1]} but {first[0]} is {first[1][0]}x{first[1][1]}; "
                "all images must share one size (resize them first)"
            )
        grayscale = grayscale and mode in _GRAYSCALE_MODES
    assert first is not None  # _list_split refuses empty splits
    mode = "L" if grayscale else "RGB"
    return ImageFolderIndex(root, classes, splits["train"], splits["test"], mode, first[1])


def _read_images(items: list[tuple[Path, int]], index: ImageFolderIndex) -> ArrayPair:
    images = np.empty((len(items), *index.image_shape), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        images[i] = decode_image(path, index.mode, index.size)
    return images, np.array([label for _, label in items], dtype=np.int64)


def load_image_folder(root: Path) -> Splits:
    """All images of ``root/{train,test}/<class>/``, as RGB (or L when every image is grayscale)."""
    index = index_image_folder(root)
    return _read_images(index.train, index), _read_images(index.test, index)


def has_image_folder(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()
