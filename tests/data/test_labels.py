"""One rule for labels on every path (tensors, numpy arrays, .npz, Datasets), and messages that
say what is wrong with the data: channels-last tensors, labels beyond the model's classes,
negative labels, empty data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import advkit
from advkit.data import DataError, StreamingData, load_dataset
from advkit.data.labels import check_label_range, class_indices
from advkit.data.user_data import as_tensor_data, user_splits

WHOLE = "is not a whole number"


def _images(n: int = 12) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8)


class _Items(Dataset):
    """A map-style Dataset whose items carry the given labels."""

    def __init__(self, labels: list) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return torch.rand(1, 8, 8), self.labels[i]


def _npz(tmp_path, y_train, y_test):
    path = tmp_path / "data.npz"
    x = np.zeros((len(y_train), 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=y_train, x_test=x[: len(y_test)], y_test=y_test)
    return path


def test_the_rule_whole_floats_convert_fractions_strings_and_negatives_are_refused():
    assert class_indices(np.array([0.0, 2.0, 1.0]), "y").tolist() == [0, 2, 1]
    assert class_indices(torch.tensor([[1.0], [0.0]]), "y").tolist() == [1, 0]  # (N, 1) column
    assert class_indices([True, False], "y").tolist() == [1, 0]
    with pytest.raises(DataError, match=f"y: label 2.5 at index 1 {WHOLE} \\(1 of 3 labels\\)"):
        class_indices([0.0, 2.5, 1.0], "y")
    with pytest.raises(DataError, match=f"label nan at index 0 {WHOLE}"):
        class_indices([float("nan")], "y")
    with pytest.raises(DataError, match="got dtype <U3; map class names to indices"):
        class_indices(["cat", "dog"], "y")
    with pytest.raises(DataError, match="label -1 at index 1 is negative"):
        class_indices([0, -1], "y")


@pytest.mark.parametrize("kind", ["tensor", "numpy", "npz", "dataset"])
def test_integer_valued_float_labels_pass_on_every_path(tmp_path, kind):
    labels = [float(i % 3) for i in range(12)]
    if kind == "tensor":
        got = as_tensor_data((_images(), torch.tensor(labels)), "data").labels
    elif kind == "numpy":
        got = as_tensor_data((_images().numpy(), np.array(labels)), "data").labels
    elif kind == "npz":  # refused before ("labels must be integers, got dtype float64")
        got = load_dataset("npz", _npz(tmp_path, np.array(labels), np.array(labels)), val_size=0)
        got = got.train.labels
    else:  # refused before, from the items' labels
        got = StreamingData.from_dataset(_Items(labels)).labels
    assert got.dtype == torch.int64 and got.tolist() == [i % 3 for i in range(12)]


@pytest.mark.parametrize("kind", ["tensor", "numpy", "npz", "dataset", "dataset item"])
def test_fractional_float_labels_are_refused_with_one_line_on_every_path(tmp_path, kind):
    labels = [0.0] * 11 + [1.5]
    expected = (
        f"item 11 of _Items has label 1.5, which {WHOLE}"
        if kind == "dataset item"
        else f"label 1.5 at index 11 {WHOLE}"
    )
    with pytest.raises(DataError, match=expected) as refused:
        if kind == "tensor":
            as_tensor_data((_images(), torch.tensor(labels)), "data")
        elif kind == "numpy":
            as_tensor_data((_images().numpy(), np.array(labels)), "data")
        elif kind == "npz":
            load_dataset("npz", _npz(tmp_path, np.array(labels), np.array(labels)), val_size=0)
        elif kind == "dataset":
            StreamingData.from_dataset(_Items(labels))
        else:  # labels given up front, the item's own label read when taken
            data = StreamingData.from_dataset(_Items(labels), labels=[0] * 12)
            data.take(torch.arange(12))
    assert "\n" not in str(refused.value)


def test_channels_last_tensors_are_refused_saying_how_to_permute():
    images = torch.rand(4, 28, 28, 1)  # read as 28 channels of 28x1 before
    with pytest.raises(DataError, match=r"look channels-last \(N, H, W, C\): permute them"):
        as_tensor_data((images, torch.zeros(4, dtype=torch.long)), "train_data")
    nchw = as_tensor_data((images.permute(0, 3, 1, 2), torch.zeros(4, dtype=torch.long)), "x")
    assert tuple(nchw.images.shape) == (4, 1, 28, 28)
    numpy_nhwc = as_tensor_data((images.numpy(), np.zeros(4, np.int64)), "x")  # numpy's layout
    assert tuple(numpy_nhwc.images.shape) == (4, 1, 28, 28)


def test_labels_beyond_the_classes_are_named_with_a_remap_hint():
    labels = torch.arange(5, 15).repeat(2)
    with pytest.raises(DataError) as refused:
        user_splits((_images(20), labels), val_size=0, num_classes=10)
    message = str(refused.value)
    assert "train_data: 10 of 20 labels (10, 11, 12, 13, 14) are outside 0..9" in message
    assert "num_classes=10" in message and "remap them to 0..9 (e.g. subtract 5)" in message
    check_label_range(labels, 15, "y", "num_classes=15")  # in range: nothing to say


def _net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def test_fit_and_evaluate_blame_the_labels_not_the_model():
    images, labels = _images(20), torch.arange(5, 15).repeat(2)
    with pytest.raises(DataError, match=r"outside 0..9 \(the model has 10 outputs"):
        advkit.fit(_net(), (images, labels), epochs=1, quiet=True)
    with pytest.raises(DataError, match=r"outside 0..9 \(the model has 10 outputs") as refused:
        advkit.evaluate(_net(), (images, labels), eps=0.1, checks="none")
    assert "make it output" not in str(refused.value)


def test_empty_data_says_which_split_is_empty():
    empty = (torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(DataError, match=r"train_data is empty \(0 images\)"):
        advkit.fit(_net(), empty, epochs=1, quiet=True)
    with pytest.raises(DataError, match=r"val_data is empty \(0 images\)"):
        user_splits((_images(), torch.zeros(12, dtype=torch.long)), empty)


class _ChannelsLastItems(Dataset):
    """Items of (H, W, C) images, as a Dataset without ToTensor returns them."""

    def __init__(self, as_numpy: bool) -> None:
        self.as_numpy = as_numpy

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        image = torch.rand(8, 6, 3)
        return (image.numpy() if self.as_numpy else image), i % 2


def test_channels_last_dataset_items_numpy_follows_its_layout_a_tensor_is_refused():
    with pytest.raises(DataError, match=r"looks channels-last \(H, W, C\): permute it"):
        StreamingData.from_dataset(_ChannelsLastItems(as_numpy=False))
    numpy_items = StreamingData.from_dataset(_ChannelsLastItems(as_numpy=True))
    assert numpy_items.image_shape == (3, 8, 6)  # read as 8 channels of 6x3 before
    assert tuple(numpy_items.take(torch.arange(4)).images.shape) == (4, 3, 8, 6)
