"""An .npz of x_test and y_test alone serves evaluation; training is told it needs x_train."""

from __future__ import annotations

import numpy as np
import pytest

from advkit.data import DataError, load_dataset, open_splits


@pytest.fixture
def test_only(tmp_path):
    path = tmp_path / "test-only.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_test=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), y_test=np.arange(6) % 3)
    return path


def test_evaluation_reads_the_test_split_alone(test_only):
    splits = open_splits("npz", test_only, val_size=0, for_training=False)
    assert len(splits.train) == 0 and len(splits.test) == 6 and splits.num_classes == 3
    assert tuple(splits.test.images.shape[1:]) == (1, 8, 8) and len(splits.mean) == 1


def test_training_is_told_it_needs_the_training_split(test_only):
    with pytest.raises(DataError, match=r"holds no training images .* training needs them"):
        load_dataset("npz", test_only, val_size=0)


def test_other_missing_keys_are_still_named(tmp_path):
    path = tmp_path / "half.npz"
    np.savez(path, x_train=np.zeros((2, 8, 8), np.uint8), x_test=np.zeros((2, 8, 8), np.uint8),
             y_test=np.zeros(2, np.int64))  # fmt: skip
    with pytest.raises(DataError, match=r"lacks y_train .*x_test and y_test alone serve"):
        load_dataset("npz", path, val_size=0, for_training=False)
    empty = tmp_path / "empty.npz"
    np.savez(empty, x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="holds no test images"):
        load_dataset("npz", empty, val_size=0, for_training=False)
