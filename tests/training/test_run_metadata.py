"""What the run folder records is what was used: the given DataSplits' dataset, no data_dir it
did not read; splits whose labels or facts disagree are refused before anything is written."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from advkit.data import DataError, TensorData
from advkit.training import train
from tests.training.test_trainer import small_config


def test_given_splits_are_recorded_not_the_config_s_dataset(fashion_small, tmp_path):
    mnist_named = dataclasses.replace(fashion_small, dataset="mnist", class_names=None)
    config = small_config(epochs=1, dataset="fashion-mnist", data_dir="/data/never-read")
    train(config, tmp_path, data=mnist_named)
    meta = json.loads((tmp_path / "model.json").read_text())
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert meta["dataset"] == saved["dataset"] == "mnist"
    assert meta["data_dir"] is None and saved["data_dir"] is None
    assert meta["input_shape"] == [1, 28, 28] and meta["num_classes"] == 10
    assert meta["class_names"] is None
    assert config.dataset == "fashion-mnist"  # the caller's config is left as it was


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"num_classes": 5, "class_names": None},
            r"train labels span 0\.\.9, outside 0\.\.4 for num_classes=5",
        ),
        ({"class_names": ["a", "b"]}, "2 class_names for num_classes=10"),
        ({"mean": (0.5, 0.5, 0.5)}, r"one value per channel \(1\)"),
    ],
)
def test_splits_that_disagree_are_refused_before_writing(fashion_small, tmp_path, change, message):
    bad = dataclasses.replace(fashion_small, **change)
    with pytest.raises(DataError, match=message):
        train(small_config(epochs=1), tmp_path / "run", data=bad)
    assert not (tmp_path / "run").exists()


def test_splits_of_different_image_shapes_are_refused(fashion_small):
    test = fashion_small.test
    wide = TensorData(torch.zeros(4, 1, 28, 32, dtype=torch.uint8), test.labels[:4])
    with pytest.raises(DataError, match="differ in shape"):
        train(small_config(epochs=1), data=dataclasses.replace(fashion_small, test=wide))
