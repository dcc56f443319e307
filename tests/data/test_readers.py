"""Readers and load_dataset: real data against published facts, and every kind of bad input."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advkit.data import DATASETS, DataError, DataNotFoundError, load_dataset, resolve_data_dir
from advkit.data.readers import read_cifar_pickle

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
FASHION_HOW = "apt-get install dataset-fashion-mnist"


def test_registry_names():
    assert DATASETS.names() == [
        "cifar10",
        "cifar100",
        "fashion-mnist",
        "imagefolder",
        "mnist",
        "npz",
    ]
    assert DATASETS.get("fashion-mnist").default_dir == "/usr/share/datasets/fashion-mnist"
    with pytest.raises(DataError, match="choose one of"):
        load_dataset("svhn", "/nowhere")


# --- real data -------------------------------------------------------------------------------


def test_mnist_idx_gz_real(mnist_idx_dirs, mnist_arrays, no_env):
    splits = load_dataset("mnist", mnist_idx_dirs["gz"], val_size=0)
    train, test = splits.train, splits.test
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.images.is_contiguous()
    assert train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.array_equal(test.images[:, 0].numpy(), mnist_arrays["x_test"])
    assert splits.num_classes == 10 and splits.augment == "none" and splits.dataset == "mnist"
    assert splits.class_names == [str(d) for d in range(10)]


def test_mnist_idx_plain(mnist_idx_dirs, mnist_arrays, no_env):
    splits = load_dataset("mnist", mnist_idx_dirs["plain"], val_size=0)
    assert np.array_equal(splits.train.images[:, 0].numpy(), mnist_arrays["x_train"][:2000])
    assert np.array_equal(splits.test.labels.numpy(), mnist_arrays["y_test"][:500])


def test_mnist_npz_in_shared_folder(shared_dir, no_env):
    """``--dataset mnist --data-dir <shared>`` reads <shared>/mnist.npz (no idx files there)."""
    splits = load_dataset("mnist", shared_dir, subset=1000)
    assert len(splits.train) == 1000 and len(splits.val) == 5000 and len(splits.test) == 10000
    assert splits.train.images.shape[1:] == (1, 28, 28)


def test_fashion_mnist_default_dir(fashion_dir, no_env):
    assert resolve_data_dir("fashion-mnist", None) == fashion_dir
    splits = load_dataset("fashion-mnist", val_size=0)
    assert splits.train.images.shape == (60000, 1, 28, 28)
    assert splits.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(splits.train.labels).tolist() == [6000] * 10
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10
    assert splits.class_names is not None and splits.class_names[0] == "T-shirt/top"


def test_cifar10_pickles_real(cifar10_root, no_env):
    splits = load_dataset("cifar10", cifar10_root, val_size=0)
    assert splits.train.images.shape == (50000, 3, 32, 32)
    assert splits.test.images.shape == (10000, 3, 32, 32)
    assert splits.train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert np.allclose(splits.mean, (0.4914, 0.4822, 0.4465), atol=5e-4)
    assert np.allclose(splits.std, (0.2470, 0.2435, 0.2616), atol=5e-4)
    assert splits.augment == "crop-flip" and splits.class_names[0] == "airplane"


# --- locating the data -----------------------------------------------------------------------


def test_cifar_folder_itself_or_parent(tiny_cifar_root, no_env):
    a = load_dataset("cifar10", tiny_cifar_root, val_size=0)
    b = load_dataset("cifar10", tiny_cifar_root / "cifar-10-batches-py", val_size=0)
    assert torch.equal(a.train.images, b.train.images) and len(a.train) == 10
    assert a.test.images.shape == (4, 3, 32, 32)


def test_cifar_python2_style_module_name(tiny_cifar_root, no_env):
    """The original files name ``numpy.core.multiarray._reconstruct``; that must be allowed."""
    path = tiny_cifar_root / "cifar-10-batches-py" / "data_batch_1"
    before = read_cifar_pickle(path)
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    after = read_cifar_pickle(path)
    assert np.array_equal(before[b"data"], after[b"data"])


def test_env_var_folder_with_files_or_subfolders(tmp_path, make, monkeypatch):
    np.savez(tmp_path / "mnist.npz", **make.arrays())
    make.idx_set(tmp_path / "fashion-mnist", make.arrays(), gz=False)
    monkeypatch.setenv("ADVKIT_DATA", str(tmp_path))
    assert resolve_data_dir("mnist", None) == tmp_path
    assert resolve_data_dir("fashion-mnist", None) == tmp_path / "fashion-mnist"
    assert len(load_dataset("mnist", val_size=10).train) == 20
    assert len(load_dataset("mnist", tmp_path / "mnist.npz", val_size=0).train) == 30
    # an explicit folder beats the environment; a per-dataset subfolder of it is found too
    explicit = make.idx_set(tmp_path / "elsewhere", make.arrays(), gz=True)
    assert resolve_data_dir("fashion-mnist", explicit) == explicit
    assert resolve_data_dir("fashion-mnist", tmp_path) == tmp_path / "fashion-mnist"


def test_missing_folder_says_where_and_how(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("fashion-mnist", missing)
    assert str(missing) in str(err.value) and FASHION_HOW in str(err.value)
    assert isinstance(err.value, FileNotFoundError)

    monkeypatch.setenv("ADVKIT_DATA", str(missing))
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    assert str(missing / "mnist") in msg and "does not exist" in msg and "mnist.npz" in msg

    monkeypatch.delenv("ADVKIT_DATA")
    with pytest.raises(DataNotFoundError, match="ADVKIT_DATA"):
        load_dataset("cifar10")


def test_empty_folder_lists_expected_files(tmp_path, no_env):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("fashion-mnist", tmp_path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path) in msg and FASHION_HOW in msg
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)


# --- bad MNIST files -------------------------------------------------------------------------


def test_truncated_gzip(tiny_mnist_dir, no_env):
    path = tiny_mnist_dir / "train-images-idx3-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="gzip") as err:
        load_dataset("mnist", tiny_mnist_dir, val_size=0)
    assert str(path) in str(err.value)


def test_truncated_plain_idx(tmp_path, make, no_env):
    folder = make.idx_set(tmp_path, make.arrays(), gz=False)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as err:
        load_dataset("mnist", folder, val_size=0)
    assert str(path) in str(err.value)


def test_gzip_with_short_content(tiny_mnist_dir, no_env):
    """A valid gzip stream whose idx content is shorter than its header says."""
    path = tiny_mnist_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    with pytest.raises(DataError, match="truncated") as err:
        load_dataset("mnist", tiny_mnist_dir, val_size=0)
    assert str(path) in str(err.value)


def test_wrong_magic(tiny_mnist_dir, make, no_env):
    path = tiny_mnist_dir / "train-images-idx3-ubyte.gz"
    make.idx(path, make.arrays()["y_train"])  # a labels file where images belong
    with pytest.raises(DataError, match="magic number 2049, expected 2051") as err:
        load_dataset("mnist", tiny_mnist_dir, val_size=0)
    assert str(path) in str(err.value)


def test_count_mismatch(tiny_mnist_dir, make, no_env):
    make.idx(tiny_mnist_dir / "t10k-labels-idx1-ubyte.gz", make.arrays()["y_test"][:-1])
    with pytest.raises(DataError, match=r"10 images but .* 9 labels"):
        load_dataset("mnist", tiny_mnist_dir, val_size=0)


def test_label_out_of_range(tiny_mnist_dir, make, no_env):
    labels = make.arrays()["y_train"].copy()
    labels[7] = 10
    path = make.idx(tiny_mnist_dir / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match=r"label 10 at index 7 is outside 0..9") as err:
        load_dataset("mnist", tiny_mnist_dir, val_size=0)
    assert str(path) in str(err.value)


def test_wrong_image_shape_for_dataset(tmp_path, make, no_env):
    np.savez(tmp_path / "mnist.npz", **make.arrays(shape=(32, 32)))
    with pytest.raises(DataError, match=r"should be \(1, 28, 28\)"):
        load_dataset("mnist", tmp_path, val_size=0)


# --- bad CIFAR pickles -----------------------------------------------------------------------


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tiny_cifar_root, tmp_path, no_env):
    marker = tmp_path / "pwned"
    path = tiny_cifar_root / "cifar-10-batches-py" / "data_batch_1"
    with path.open("wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DataError, match="refusing to load") as err:
        load_dataset("cifar10", tiny_cifar_root, val_size=0)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_truncated_pickle(tiny_cifar_root, no_env):
    path = tiny_cifar_root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        load_dataset("cifar10", tiny_cifar_root, val_size=0)
    assert str(path) in str(err.value)


def test_cifar_label_out_of_range_and_missing_batch(tiny_cifar_root, make, no_env):
    folder = tiny_cifar_root / "cifar-10-batches-py"
    images = np.zeros((2, 32, 32, 3), np.uint8)
    make.cifar_batch(folder / "data_batch_3", images, np.array([0, 12]))
    with pytest.raises(DataError, match="label 12 at index 1") as err:
        load_dataset("cifar10", tiny_cifar_root, val_size=0)
    assert "data_batch_3" in str(err.value)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataNotFoundError, match="missing data_batch_5"):
        load_dataset("cifar10", tiny_cifar_root, val_size=0)


# --- npz -------------------------------------------------------------------------------------


def test_npz_file_nhwc_and_folder(tmp_path, make, no_env):
    arrays = make.arrays(12, 5, (6, 7, 3), classes=4)
    arrays["y_train"] = arrays["y_train"].reshape(-1, 1)  # Keras-style (N, 1) labels
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    splits = load_dataset("npz", path, val_size=0)
    assert splits.train.images.shape == (12, 3, 6, 7) and splits.num_classes == 4
    assert torch.equal(
        splits.train.images[3].permute(1, 2, 0), torch.from_numpy(arrays["x_train"][3])
    )
    assert splits.class_names is None
    assert len(load_dataset("npz", tmp_path, val_size=0).train) == 12  # the single .npz inside
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(DataNotFoundError, match=r"exactly one .npz"):
        load_dataset("npz", tmp_path, val_size=0)


def test_npz_corrupt_or_incomplete(tmp_path, make, no_env):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"not a readable .npz") as err:
        load_dataset("npz", bad)
    assert str(bad) in str(err.value)
    arrays = make.arrays()
    del arrays["y_test"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(DataError, match="lacks y_test"):
        load_dataset("npz", tmp_path / "partial.npz")


# --- image folders ---------------------------------------------------------------------------


def _save(path: Path, size: tuple[int, int], mode: str = "RGB", value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, 7)).save(path)


def test_image_folder(tmp_path, no_env):
    for split, count in (("train", 3), ("test", 1)):
        for c, name in enumerate(["zebra", "ant"]):
            for i in range(count):
                _save(tmp_path / split / name / f"{i}.png", (5, 4), value=10 * c + i)
    (tmp_path / "train" / "ant" / "notes.txt").write_text("ignored")
    splits = load_dataset("imagefolder", tmp_path, val_size=0)
    assert splits.class_names == ["ant", "zebra"] and splits.num_classes == 2
    assert splits.train.images.shape == (6, 3, 4, 5) and splits.test.images.shape == (2, 3, 4, 5)
    assert splits.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert splits.train.images[0, :, 0, 0].tolist() == [10, 245, 7]  # ant/0.png: RGB, CHW


def test_image_folder_grayscale(tmp_path, no_env):
    for split in ("train", "test"):
        _save(tmp_path / split / "a" / "x.png", (3, 3), "L", 9)
        _save(tmp_path / split / "b" / "y.jpg", (3, 3), "L", 200)
    splits = load_dataset("imagefolder", tmp_path, val_size=0)
    assert splits.train.images.shape == (2, 1, 3, 3) and splits.train.images[0].max() == 9


def test_image_folder_mixed_sizes(tmp_path, no_env):
    _save(tmp_path / "train" / "a" / "1.png", (4, 4))
    _save(tmp_path / "train" / "a" / "2.png", (5, 4))
    _save(tmp_path / "test" / "a" / "1.png", (4, 4))
    with pytest.raises(DataError, match=r"is 5x4 but .* is 4x4") as err:
        load_dataset("imagefolder", tmp_path, val_size=0)
    assert str(tmp_path / "train" / "a" / "2.png") in str(err.value)


def test_image_folder_without_images(tmp_path, no_env):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="holds no PNG or JPEG") as err:
        load_dataset("imagefolder", tmp_path, val_size=0)
    assert str(tmp_path / "train" / "a") in str(err.value)
    (tmp_path / "train" / "a").rmdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset("imagefolder", tmp_path, val_size=0)
    with pytest.raises(DataNotFoundError, match="train/<class>"):
        load_dataset("imagefolder", tmp_path / "test", val_size=0)


def test_image_folder_corrupt_image(tmp_path, no_env):
    _save(tmp_path / "train" / "a" / "1.png", (4, 4))
    _save(tmp_path / "test" / "a" / "1.png", (4, 4))
    bad = tmp_path / "train" / "a" / "2.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="not a readable image") as err:
        load_dataset("imagefolder", tmp_path, val_size=0)
    assert str(bad) in str(err.value)
