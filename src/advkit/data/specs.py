"""The dataset table (``DATASETS``) and where each dataset's files are looked for.

A :class:`DatasetSpec` says what a dataset is (classes, image shape, default augmentation) and how
to read it; the CLI choices, config validation and tests all read this one registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from advkit.data import readers
from advkit.data.errors import DataError, DataNotFoundError
from advkit.data.readers import Splits
from advkit.registry import Registry

ENV_VAR = "ADVKIT_DATA"
"""Environment variable naming a data folder: per-dataset subfolders or the files directly."""


def _exists(path: Path) -> bool:
    return path.exists()


def _no_class_names(path: Path) -> list[str] | None:
    return None


def _fixed_names(names: tuple[str, ...]) -> Callable[[Path], list[str] | None]:
    return lambda path: list(names)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its shape facts, where it usually lives, and how to read it.

    Attributes:
        name: registry name (``--dataset``).
        num_classes: number of classes; None means it is read from the data.
        image_shape: (C, H, W), or None when it depends on the files.
        default_dir: where the data is looked for when no folder is given, or None.
        augment: the default training augmentation, "none" or "crop-flip".
        how_to_get: one sentence telling the user how to obtain the files.
        load: reads ``(train, test)`` from a folder (or a file, for "npz").
        probe: whether a path looks like it holds this dataset; picks among candidate folders.
        class_names: the class names for a data path, or None when unknown.
        stream: for data read item by item (image folders), the training and test sets as
            ``StreamingData`` and the class names, listed but not decoded; None for arrays.
    """

    name: str
    num_classes: int | None
    image_shape: tuple[int, int, int] | None
    default_dir: str | None
    augment: str
    how_to_get: str
    load: Callable[[Path], Splits]
    probe: Callable[[Path], bool] = _exists
    class_names: Callable[[Path], list[str] | None] = _no_class_names
    stream: Callable[[Path], tuple[Any, Any, list[str] | None]] | None = None
    default_model: str = "cnn-small"
    linf_eps: float = 8 / 255
    l2_eps: float = 0.5


#: What an unset model and eps mean for data advkit does not know by name (a caller's tensors):
#: the budgets of natural-image benchmarks (CIFAR-10, ImageNet-scale L2).
GENERIC_DEFAULTS = ("cnn-small", {"linf": 8 / 255, "l2": 0.5})


def data_defaults(dataset: str | None, norm: str) -> tuple[str, float]:
    """The model and the eps an unset ``model``/``eps`` mean for ``dataset`` under ``norm``: the
    dataset's budget (MNIST and Fashion-MNIST 0.1 / L2 2.0, CIFAR 8/255 / 0.5) and a model that
    takes its images; others get ``GENERIC_DEFAULTS``."""
    if dataset in DATASETS.names():
        spec = DATASETS.get(dataset)
        return spec.default_model, spec.l2_eps if norm == "l2" else spec.linf_eps
    model, budgets = GENERIC_DEFAULTS
    return model, budgets.get(norm, budgets["linf"])


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _stream_image_folder(path: Path) -> tuple[Any, Any, list[str] | None]:
    from advkit.data.streaming import image_folder_sources  # it reads this module

    return image_folder_sources(path)


def _register(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name)(spec)


def _idx_spec(
    name: str, title: str, default_dir: str | None, how: str, classes: tuple[str, ...],
    linf_eps: float,
) -> None:  # fmt: skip
    subdirs = (f"{title}/raw",)  # torchvision's layout: <root>/MNIST/raw/
    _register(
        DatasetSpec(
            name=name,
            num_classes=10,
            image_shape=(1, 28, 28),
            default_dir=default_dir,
            augment="none",
            how_to_get=how,
            load=partial(readers.load_idx_dataset, num_classes=10, npz_name=name, subdirs=subdirs),
            probe=partial(readers.has_idx_dataset, npz_name=name, subdirs=subdirs),
            class_names=_fixed_names(classes),
            linf_eps=linf_eps,
            l2_eps=2.0,  # 28x28 grayscale: the MNIST L2 budget (Madry et al.; Croce & Hein)
        )
    )


_idx_spec(
    "mnist",
    "MNIST",
    None,
    "Download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
    "and t10k-labels-idx1-ubyte.gz (MNIST, http://yann.lecun.com/exdb/mnist/ or a mirror) into "
    "one folder, or put an mnist.npz there.",
    tuple(str(d) for d in range(10)),
    # Madry et al.'s 0.3 is a recipe's budget (mnist-pgd40, mnist-fast): a few epochs of Free-AT
    # at 0.3 collapse to chance even with the eps ramp (BENCHMARKS.md, "Training with the
    # defaults"); at 0.1 every method learns.
    linf_eps=0.1,
)
_idx_spec(
    "fashion-mnist",
    "FashionMNIST",
    "/usr/share/datasets/fashion-mnist",
    "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the "
    "four idx .gz files from https://github.com/zalandoresearch/fashion-mnist into one folder.",
    (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    linf_eps=0.1,  # the budget of the Fashion-MNIST adversarial-training literature
)
_register(
    DatasetSpec(
        name="cifar10",
        default_model="preact-resnet18",  # the fast-AT / TRADES-era CIFAR baseline
        num_classes=10,
        image_shape=(3, 32, 32),
        default_dir=None,
        augment="crop-flip",
        how_to_get="Download cifar-10-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and extract it (it makes "
        "cifar-10-batches-py/), or provide a cifar10.npz.",
        load=readers.load_cifar10,
        probe=partial(
            readers.has_cifar,
            subdir="cifar-10-batches-py",
            first_file="data_batch_1",
            npz_name="cifar10",
        ),
        class_names=_fixed_names(
            (
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            )
        ),
    )
)
_register(
    DatasetSpec(
        name="cifar100",
        default_model="preact-resnet18",  # the fast-AT / TRADES-era CIFAR baseline
        num_classes=100,
        image_shape=(3, 32, 32),
        default_dir=None,
        augment="crop-flip",
        how_to_get="Download cifar-100-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and extract it (it makes cifar-100-python/), "
        "or provide a cifar100.npz.",
        load=readers.load_cifar100,
        probe=partial(
            readers.has_cifar, subdir="cifar-100-python", first_file="train", npz_name="cifar100"
        ),
        class_names=readers.cifar100_class_names,
    )
)
_register(
    DatasetSpec(
        name="npz",
        num_classes=None,
        image_shape=None,
        default_dir=None,
        augment="none",
        how_to_get="Save your arrays with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
        "y_test=...) (images NHW or NHWC, uint8 or float in [0, 1]; integer labels) and pass the "
        "file.",
        load=readers.load_npz_dataset,
        probe=readers.has_npz,
    )
)
_register(
    DatasetSpec(
        name="imagefolder",
        num_classes=None,
        image_shape=None,
        default_dir=None,
        augment="none",
        how_to_get="Arrange PNG/JPEG files as <root>/train/<class>/ and <root>/test/<class>/ "
        "(one subfolder per class, same names in both) and pass <root>.",
        load=readers.load_image_folder,
        probe=readers.has_image_folder,
        class_names=readers.image_folder_classes,
        stream=_stream_image_folder,
    )
)


def get_spec(name: str) -> DatasetSpec:
    """The registered spec for ``name``; a DataError listing the choices otherwise."""
    try:
        return DATASETS.get(name)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def resolve_data_dir(name: str, data_dir: str | Path | None) -> Path:
    """The folder (or file) to read dataset ``name`` from.

    Order: the explicit ``data_dir`` (or its ``<name>`` subfolder when only that holds the
    data), else ``$ADVKIT_DATA/<name>`` or ``$ADVKIT_DATA`` itself, else the spec's default folder.
    Raises DataNotFoundError saying where it looked and how to get the data.
    """
    spec = get_spec(name)
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.exists():
            raise DataNotFoundError(
                f"{name} data not found: {path} does not exist. {spec.how_to_get}"
            )
        if not spec.probe(path) and spec.probe(path / name):
            return path / name
        return path
    candidates: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        candidates += [root / name, root]
    if spec.default_dir:
        candidates.append(Path(spec.default_dir))
    for path in candidates:
        if path.exists() and spec.probe(path):
            return path
    if not candidates:
        raise DataNotFoundError(
            f"no folder given for {name}: pass data_dir (--data-dir) or set ${ENV_VAR}. "
            f"{spec.how_to_get}"
        )
    looked = "; ".join(
        f"{p} ({'holds no ' + name + ' files' if p.exists() else 'does not exist'})"
        for p in candidates
    )
    raise DataNotFoundError(
        f"{name} data not found; looked in {looked}. {spec.how_to_get} Then pass its folder as "
        f"data_dir (--data-dir) or set ${ENV_VAR}."
    )
