"""Readers for the standard on-disk dataset formats: MNIST idx, CIFAR pickles, .npz, image folders.

Every reader returns ``((train_images, train_labels), (test_images, test_labels))`` with images
uint8 (N, C, H, W) and labels int64 (N,). Readers only read, never write into the data folder.
Any problem with the files is a :class:`DataError` naming the file and what is wrong, so a user
can fix the folder instead of decoding a traceback from numpy, gzip or pickle.
"""

from __future__ import annotations

import codecs
import gzip
import math
import pickle
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from advkit.data.errors import DataError, DataNotFoundError

ArrayPair = tuple[np.ndarray, np.ndarray]
"""(images uint8 (N, C, H, W), labels int64 (N,))."""

Splits = tuple[ArrayPair, ArrayPair]
"""(train, test)."""

IDX_IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_GZIP_MAGIC = b"\x1f\x8b"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_GRAYSCALE_MODES = frozenset({"1", "L", "LA"})


def find_named_npz(root: Path, npz_name: str) -> Path | None:
    """``root`` itself when it is an .npz file, else ``root/<npz_name>.npz`` if present."""
    if root.is_file():
        return root if root.suffix == ".npz" else None
    candidate = root / f"{npz_name}.npz"
    return candidate if candidate.is_file() else None


def check_labels(labels: Any, num_classes: int | None, source: Path | str) -> np.ndarray:
    """Labels as a 1-D int64 array, refusing non-integers and values outside [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:  # Keras-style (N, 1) label columns
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{source}: labels must be a 1-D array, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    high = num_classes if num_classes is not None else np.iinfo(np.int64).max
    bad = np.flatnonzero((labels < 0) | (labels >= high))
    if bad.size:
        i = int(bad[0])
        limit = f"0..{num_classes - 1}" if num_classes is not None else "0 or more"
        raise DataError(
            f"{source}: label {labels[i]} at index {i} is outside {limit} ({bad.size} labels out "
            "of range); the file is corrupt or belongs to another dataset"
        )
    return labels


# ---------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST idx files


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (detected by content, not by name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is a corrupt or truncated gzip file ({exc}); download it again"
        ) from exc


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx array of unsigned bytes; ``magic`` is 2051 for image files, 2049 for label files."""
    raw = _read_maybe_gzip(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
    if len(raw) < header:
        raise DataError(
            f"{path} is too short ({len(raw)} bytes) to be an idx {kind} file; download it again"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{path} has magic number {found}, expected {magic} for idx {kind}; "
            "is it the right file (images and labels swapped, or not an idx file)?"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {what}: its header says {'x'.join(map(str, dims))} ({expected} bytes) "
            f"but it has {len(raw)} bytes; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def locate_idx(root: Path, subdirs: Sequence[str] = ()) -> dict[str, Path] | None:
    """The four idx files in ``root`` (or one of its ``subdirs``), or None if no folder has all."""
    for folder in (root, *(root / sub for sub in subdirs)):
        found = {stem: _find_idx_file(folder, stem) for stem in IDX_STEMS}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int | None) -> ArrayPair:
    """One split from an idx image file and its label file, checked against each other."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; both files must come from the same release"
        )
    return images[:, None], check_labels(labels, num_classes, labels_path)


def load_idx_dataset(
    root: Path, *, num_classes: int, npz_name: str, subdirs: Sequence[str] = ()
) -> Splits:
    """MNIST-format idx files (gzip or plain) in ``root``, else ``root/<npz_name>.npz``."""
    files = locate_idx(root, subdirs)
    if files is None:
        npz = find_named_npz(root, npz_name)
        if npz is not None:
            return read_npz(npz, num_classes)
        missing = [s + "[.gz]" for s in IDX_STEMS if _find_idx_file(root, s) is None]
        raise DataNotFoundError(
            f"no {npz_name} files in {root}: missing {', '.join(missing)} (or {npz_name}.npz)."
        )
    train = read_idx_pair(files[IDX_STEMS[0]], files[IDX_STEMS[1]], num_classes)
    test = read_idx_pair(files[IDX_STEMS[2]], files[IDX_STEMS[3]], num_classes)
    return train, test


def has_idx_dataset(root: Path, *, npz_name: str, subdirs: Sequence[str] = ()) -> bool:
    return locate_idx(root, subdirs) is not None or find_named_npz(root, npz_name) is not None


# ---------------------------------------------------------------------------------------------
# CIFAR python pickles


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle named a function or class outside the allow-list."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``codecs.encode`` limited to latin-1: how protocol-2 pickles from Python 3 store bytes."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise RefusedGlobalError(f"refusing codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array rebuilder, whatever module holds it
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("codecs", "encode"): _latin1_encode,
}


class CifarUnpickler(pickle.Unpickler):
    """Unpickler that builds only what CIFAR files hold (dicts, lists, bytes, numpy arrays).

    Plain ``pickle.load`` calls whatever function a file names, so a tampered download could run
    code; this one refuses every global outside a short allow-list.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobalError(
                f"refusing to load {module}.{name}: CIFAR files only hold dicts, lists, bytes "
                "and numpy arrays"
            ) from None


def read_cifar_pickle(path: Path) -> dict[Any, Any]:
    """One CIFAR pickle file as a dict, read with :class:`CifarUnpickler`."""
    try:
        with path.open("rb") as f:
            obj = CifarUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except RefusedGlobalError as exc:
        raise DataError(f"{path} is not a safe CIFAR pickle: {exc}") from exc
    except Exception as exc:  # corrupt pickles raise many types (EOFError, KeyError, struct...)
        raise DataError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "download and extract the archive again"
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a dict of CIFAR arrays")
    return obj


def _entry(batch: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):  # Python 2 files have bytes keys; re-pickled ones may have str
        if k in batch:
            return batch[k]
    names = ", ".join(repr(k) for k in batch)
    raise DataError(f"{path} has no {key!r} entry (it has {names}); is it a CIFAR batch file?")


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> ArrayPair:
    """One CIFAR batch: ``data`` (N, 3072) uint8 rows in CHW order and its label list."""
    batch = read_cifar_pickle(path)
    data = _entry(batch, "data", path)
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    labels = _entry(batch, label_key, path)
    if len(labels) != len(data):
        raise DataError(
            f"{path} holds {len(data)} images but {len(labels)} labels; the file is corrupt"
        )
    return data.reshape(-1, 3, 32, 32), check_labels(labels, num_classes, path)


def _cifar_folder(root: Path, subdir: str, files: Sequence[str]) -> Path | None:
    """``root`` or ``root/subdir``, whichever holds the first of ``files``."""
    for folder in (root, root / subdir):
        if (folder / files[0]).is_file():
            return folder
    return None


def _load_cifar(
    root: Path,
    *,
    subdir: str,
    train_files: Sequence[str],
    test_file: str,
    label_key: str,
    num_classes: int,
    npz_name: str,
) -> Splits:
    folder = _cifar_folder(root, subdir, train_files)
    if folder is None:
        npz = find_named_npz(root, npz_name)
        if npz is not None:
            return read_npz(npz, num_classes)
        raise DataNotFoundError(
            f"no {npz_name} files in {root}: expected {subdir}/{train_files[0]} (the folder "
            f"extracted from the python-version archive, or its parent) or {npz_name}.npz."
        )
    missing = [n for n in (*train_files, test_file) if not (folder / n).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{folder} is incomplete: missing {', '.join(missing)}; extract the archive again."
        )
    parts = [read_cifar_batch(folder / n, label_key, num_classes) for n in train_files]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, read_cifar_batch(folder / test_file, label_key, num_classes)


CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def load_cifar10(root: Path) -> Splits:
    """CIFAR-10 from ``cifar-10-batches-py`` (or its parent), else ``root/cifar10.npz``."""
    return _load_cifar(
        root,
        subdir="cifar-10-batches-py",
        train_files=CIFAR10_TRAIN,
        test_file="test_batch",
        label_key="labels",
        num_classes=10,
        npz_name="cifar10",
    )


def load_cifar100(root: Path) -> Splits:
    """CIFAR-100 (fine labels) from ``cifar-100-python`` (or its parent), else ``cifar100.npz``."""
    return _load_cifar(
        root,
        subdir="cifar-100-python",
        train_files=("train",),
        test_file="test",
        label_key="fine_labels",
        num_classes=100,
        npz_name="cifar100",
    )


def has_cifar(root: Path, *, subdir: str, first_file: str, npz_name: str) -> bool:
    return (
        _cifar_folder(root, subdir, (first_file,)) is not None
        or find_named_npz(root, npz_name) is not None
    )


def cifar100_class_names(root: Path) -> list[str] | None:
    """The fine label names from ``cifar-100-python/meta``, or None when that file is absent."""
    folder = _cifar_folder(root, "cifar-100-python", ("meta",))
    if folder is None:
        return None
    names = _entry(read_cifar_pickle(folder / "meta"), "fine_label_names", folder / "meta")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


# ---------------------------------------------------------------------------------------------
# .npz archives


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """NHW, NHWC or NCHW uint8 images as NCHW."""
    if x.dtype != np.uint8:
        raise DataError(f"{path}: {key} has dtype {x.dtype}; store images as uint8 (0..255)")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    raise DataError(
        f"{path}: {key} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3"
    )


def read_npz(path: Path, num_classes: int | None = None) -> Splits:
    """An ``.npz`` holding uint8 images ``x_train``/``x_test`` (NHW or NHWC) and labels ``y_*``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            absent = [k for k in NPZ_KEYS if k not in archive.files]
            if absent:
                raise DataError(
                    f"{path} lacks {', '.join(absent)} (it has {', '.join(archive.files)}); "
                    f"an .npz dataset needs {', '.join(NPZ_KEYS)}"
                )
            arrays = {k: archive[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({exc}); recreate it") from exc
    splits = []
    for part in ("train", "test"):
        images = _npz_images(arrays[f"x_{part}"], f"x_{part}", path)
        labels = check_labels(arrays[f"y_{part}"], num_classes, f"{path} (y_{part})")
        if len(images) != len(labels):
            raise DataError(
                f"{path}: x_{part} holds {len(images)} images but y_{part} {len(labels)} labels"
            )
        splits.append((images, labels))
    return splits[0], splits[1]


def find_npz(path: Path) -> Path:
    """``path`` itself when it is a file, else the single ``.npz`` file inside the folder."""
    if path.is_file():
        return path
    found = sorted(path.glob("*.npz"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) if found else "none"
        raise DataNotFoundError(
            f"{path} must hold exactly one .npz file (found {listed}); pass the file itself."
        )
    return found[0]


def load_npz_dataset(path: Path) -> Splits:
    return read_npz(find_npz(path))


def has_npz(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".npz"
    return path.is_dir() and len(list(path.glob("*.npz"))) == 1


# ---------------------------------------------------------------------------------------------
# Image folders: root/{train,test}/<class>/<image>.png


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


def _open_image(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is not a readable image ({exc})") from exc


def _read_images(items: list[tuple[Path, int]], mode: str, size: tuple[int, int]) -> ArrayPair:
    channels = 1 if mode == "L" else 3
    images = np.empty((len(items), channels, size[1], size[0]), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        with _open_image(path) as im:
            try:
                pixels = np.asarray(im.convert(mode))
            except (OSError, ValueError) as exc:
                raise DataError(f"{path} is truncated or corrupt ({exc})") from exc
        images[i] = pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)
    return images, np.array([label for _, label in items], dtype=np.int64)


def load_image_folder(root: Path) -> Splits:
    """All images of ``root/{train,test}/<class>/``, as RGB (or L when every image is grayscale)."""
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
    return (
        _read_images(splits["train"], mode, first[1]),
        _read_images(splits["test"], mode, first[1]),
    )


def has_image_folder(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()
