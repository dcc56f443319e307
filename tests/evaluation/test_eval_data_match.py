"""`advkit eval` tests a model only on data that fits it: the dataset its run recorded (never a
default one), with the model's image shape and classes; anything else is one line naming what
differs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from advkit.cli import main
from advkit.models import create_model
from tests.conftest import FASHION_DIR, shared_data_dir

needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST missing"
)


def _npz(path, shape=(28, 28), labels=10, n=16):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = np.arange(n) % labels
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    return path


@pytest.fixture
def make_run(tmp_path):
    """A run folder holding a random 10-class cnn-small for 1x28x28 images; ``meta`` overrides."""

    def make(**meta_changes):
        torch.manual_seed(0)
        model = create_model("cnn-small", num_classes=10, mean=(0.5,), std=(0.25,))
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(weights, run / "model.safetensors")
        meta = {
            "architecture": "cnn-small", "num_classes": 10, "mean": [0.5], "std": [0.25],
            "input_shape": [1, 28, 28], "dataset": "npz",
            "data_dir": str(_npz(tmp_path / "own.npz")),
            "threat": {"norm": "linf", "eps": 0.1}, "method": {"name": "pgd"}, "epochs": 1,
            "train_seconds": 1.0,
        }  # fmt: skip
        meta.update(meta_changes)
        meta = {k: v for k, v in meta.items() if v is not ...}
        (run / "model.json").write_text(json.dumps(meta))
        return run

    return make


def _eval(run, *argv):
    return main(["eval", str(run), "--n-examples", "8", "--quiet", *argv])


def _one_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("shape", "said"),
    [((28, 28, 3), "holds 3x28x28 images but the model takes 1x28x28 (C, H, W)"),
     ((32, 32), "holds 1x32x32 images but the model takes 1x28x28")],
)  # fmt: skip
def test_test_data_of_another_image_shape_is_refused(make_run, tmp_path, capsys, shape, said):
    run = make_run()
    other = _npz(tmp_path / "other.npz", shape=shape)
    assert _eval(run, "--data-dir", str(other)) == 2
    err = _one_line(capsys)
    assert said in err and "--data-dir" in err
    assert not list(run.glob("eval-*"))


def test_test_data_with_more_classes_is_refused_fewer_fit(make_run, tmp_path, capsys):
    run = make_run()
    assert _eval(run, "--data-dir", str(_npz(tmp_path / "twelve.npz", labels=12))) == 2
    assert "has 12 classes but the model 10" in _one_line(capsys)
    assert _eval(run, "--data-dir", str(_npz(tmp_path / "five.npz", labels=5))) == 0


def test_metadata_without_a_dataset_asks_for_one(make_run, tmp_path, capsys):
    run = make_run(dataset=..., data_dir=...)
    assert _eval(run) == 2
    assert "records no dataset: name its test data with --dataset" in _one_line(capsys)
    assert _eval(run, "--dataset", "npz", "--data-dir", str(tmp_path / "own.npz")) == 0


def test_a_dataset_advkit_cannot_read_is_said_so(make_run, capsys):
    assert _eval(make_run(dataset="my-scans")) == 2
    err = _one_line(capsys)
    assert "trained on 'my-scans', which is no dataset advkit reads" in err
    assert "--dataset npz --data-dir" in err


def test_no_default_dataset_replaces_the_recorded_one(make_run, monkeypatch, capsys):
    monkeypatch.delenv("ADVKIT_DATA", raising=False)
    run = make_run(dataset="mnist", data_dir=None)
    assert _eval(run) == 2
    err = _one_line(capsys)
    assert "mnist" in err and "--data-dir" in err and "fashion" not in err.lower()
    assert not list(run.glob("eval-*"))


@needs_fashion
def test_another_dataset_with_other_classes_is_refused(make_run, capsys):
    run = make_run(dataset="mnist", data_dir=None, class_names=[str(d) for d in range(10)])
    assert _eval(run, "--dataset", "fashion-mnist") == 2
    err = _one_line(capsys)
    assert "names class 0 'T-shirt/top', the model '0': another dataset?" in err


@needs_fashion
def test_model_trained_on_given_splits_is_evaluated_on_their_dataset(
    fashion_small, tmp_path, monkeypatch, capsys
):
    """The defect: a model trained on DataSplits named "mnist" was evaluated on Fashion-MNIST."""
    from advkit.config import TrainConfig
    from advkit.training import train

    monkeypatch.delenv("ADVKIT_DATA", raising=False)
    run = tmp_path / "run"
    splits = dataclasses.replace(fashion_small, dataset="mnist", class_names=None)
    config = TrainConfig(epochs=1, steps=1, batch_size=128, val_examples=32, val_steps=1,
                         quiet=True)  # fmt: skip
    train(config, run, data=splits)
    assert _eval(run) == 2
    err = _one_line(capsys)
    assert "no folder given for mnist" in err and "--data-dir" in err
    assert not (run / "eval-quick.json").exists()
    if (shared_data_dir() / "mnist.npz").exists():
        assert _eval(run, "--data-dir", str(shared_data_dir())) == 0
        assert json.loads((run / "eval-quick.json").read_text())["n_examples"] == 8
