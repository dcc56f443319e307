"""Training on a streamed image folder: the in-memory run's weights, an exact resume mid-epoch
on the same path and after switching paths, the decision in the log and in model.json."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from advkit import runs
from advkit.cli import main
from advkit.config import TrainConfig
from advkit.data import DataError
from advkit.data.loading_path import BUDGET_ENV
from advkit.training import Trainer, TrainingInterrupted, train
from advkit.training.data_checks import check_same_data
from tests.conftest import requires_fashion_mnist
from tests.data.folders import write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """112 training images (16 held out: 3 batches of 32 per epoch) and 4 test images."""
    return write_image_folder(tmp_path_factory.mktemp("folder"), 112, 4)


def _config(folder, **extra) -> TrainConfig:
    base = dict(
        dataset="imagefolder", data_dir=str(folder), model="cnn-small", method="pgd", steps=1,
        epochs=2, batch_size=32, lr=0.05, val_size=16, val_examples=16, val_steps=1, quiet=True,
        seed=3, augment="crop-flip",
    )  # fmt: skip
    return TrainConfig(**(base | extra))


def _weights(run_dir):
    return load_file(str(run_dir / runs.MODEL_FILE))


def _assert_same_weights(a, b) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def straight(folder, tmp_path_factory):
    """The uninterrupted in-memory run everything is compared with."""
    run_dir = tmp_path_factory.mktemp("straight")
    train(_config(folder, data_loading="memory"), run_dir)
    return run_dir


def test_a_streamed_run_trains_the_in_memory_model(folder, straight, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="advkit.train"):
        result = train(_config(folder, data_loading="stream", data_workers=1), tmp_path)
    _assert_same_weights(_weights(tmp_path), _weights(straight))
    memory = json.loads((straight / runs.METRICS_FILE).read_text().splitlines()[-1])
    assert result.history[-1]["train_loss"] == memory["train_loss"]
    assert result.history[-1]["val_pgd"] == memory["val_pgd"]
    assert "data: stream, --data-loading stream; 1 data workers" in caplog.messages
    recorded = json.loads((tmp_path / runs.META_FILE).read_text())["data_loading"]
    assert recorded | {"decoded_bytes": None} == {
        "path": "stream", "reason": "--data-loading stream", "workers": 1,
        "decoded_bytes": None, "budget_bytes": None,
    }  # fmt: skip
    assert recorded["decoded_bytes"] == 96 * 28 * 28
    assert json.loads((straight / runs.META_FILE).read_text())["data_loading"]["path"] == "memory"


def _stop_at(step: int):
    def stop(trainer, now):
        if now == step:
            trainer.request_stop()

    return stop


@pytest.mark.parametrize(
    ("first", "then"),
    [({"data_loading": "stream", "data_workers": 1}, {"data_loading": "stream"}),
     ({"data_loading": "memory"}, {"data_loading": "stream", "data_workers": 1}),
     ({"data_loading": "stream", "data_workers": 0}, {"data_loading": "auto"})],
    ids=["stream-then-stream", "memory-then-stream", "stream-then-memory"],
)  # fmt: skip
def test_a_run_stopped_mid_epoch_resumes_exactly_on_either_path(
    folder, straight, tmp_path, first, then
):
    stopper = Trainer(_config(folder, **first), tmp_path, on_step=_stop_at(4))
    with pytest.raises(TrainingInterrupted):
        stopper.fit()
    resumed = Trainer(_config(folder, **then), tmp_path)
    resumed.resume()
    assert (resumed.epoch, resumed.batch) == (1, 1)
    assert resumed.feed.path.path == ("memory" if then["data_loading"] == "auto" else "stream")
    resumed.fit()
    _assert_same_weights(_weights(tmp_path), _weights(straight))


def test_resuming_on_a_changed_folder_is_refused(tmp_path):
    """The listing identifies the files by name, size and label (not pixels: a file replaced by
    one of the same size passes)."""
    changed = write_image_folder(tmp_path / "data", 112, 4)
    config = _config(changed, data_loading="stream", data_workers=0, epochs=1)
    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "run", on_step=_stop_at(1)).fit()
    Image.new("L", (28, 28), 7).save(sorted((changed / "train" / "bee").iterdir())[0])  # smaller
    with pytest.raises(DataError, match="was trained on: other training files; pass the run's"):
        Trainer(config, tmp_path / "run").resume()


def test_a_run_from_before_streaming_still_resumes():
    """Its checkpoint recorded a checksum of the pixels, which the listing has not: the rest of
    the fingerprint is compared."""
    now = {"dataset": "imagefolder", "train": 96, "labels": 7, "files": "ab12"}
    check_same_data(now, {"dataset": "imagefolder", "train": 96, "labels": 7, "images": 3}, "x")
    with pytest.raises(DataError, match="other training labels"):
        check_same_data(now, {"dataset": "imagefolder", "train": 96, "labels": 8, "images": 3}, "x")


@requires_fashion_mnist
def test_streaming_arrays_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "1")  # auto would stream anything that can
    code = main(["train", "--data-loading", "stream", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "fashion-mnist is read from array files, which load whole: it cannot stream" in err


def test_the_cli_streams_an_image_folder_and_says_why(folder, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(BUDGET_ENV, "64K")  # below the 73.5 KiB of the 96 decoded images
    args = ["train", "--dataset", "imagefolder", "--data-dir", str(folder), "--val-size", "16",
            "--val-examples", "16", "--epochs", "1", "--batch-size", "32", "--steps", "1",
            "--val-steps", "1", "--data-workers", "auto", "--out", str(tmp_path),
            "--quiet"]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="advkit.train"):
        assert main(args) == 0
    line = next(m for m in caplog.messages if m.startswith("data: "))
    assert line.startswith("data: stream, the decoded training split (73.5 KiB) exceeds the ")
    assert "memory budget (64.0 KiB: $ADVKIT_MEMORY_BUDGET)" in line
    assert main(["eval", str(tmp_path), "--suite", "quick", "--n-examples", "4", "--quiet"]) == 0
