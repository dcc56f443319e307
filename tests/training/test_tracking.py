"""Per-epoch tracking (--track-grad-align, --track-train-sample, --track-test-sample): written
each epoch, drawn in the curves, resumable, and never changing the trained weights."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from advkit import runs
from advkit.config import TrainConfig
from advkit.config_resume import resume_changes
from advkit.models import NormalizedModel
from advkit.training import train
from advkit.training.plots import curves_figure
from advkit.training.progress import epoch_line
from tests.training.test_trainer import small_config

TRACKED = ["val_grad_align", "val_grad_align_zero", "train_sample_clean", "train_sample_pgd",
           "train_sample_clean_loss", "train_sample_pgd_loss", "test_sample_clean",
           "test_sample_pgd"]  # fmt: skip


def test_tracking_writes_its_metrics_each_epoch(fashion_small, tmp_path):
    train(small_config(track_grad_align=True, track_test_sample=True), tmp_path,
          data=fashion_small)  # fmt: skip
    lines = (tmp_path / runs.METRICS_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2
    for record in records:
        assert all(key in record for key in TRACKED), record
        assert 0 < record["val_grad_align"] <= 1 and record["val_grad_align_zero"] == 0
        assert record["val_clean_loss"] > 0 and record["val_pgd_loss"] >= record["val_clean_loss"]


def _dropout_model() -> NormalizedModel:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(1, 8, 4, stride=2), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                        nn.Linear(8 * 13 * 13, 10))  # fmt: skip
    return NormalizedModel(net, (0.5,), (0.25,))


def test_tracking_leaves_the_trained_weights_alone(fashion_small):
    """Bit for bit. The model has dropout, whose masks come from the global RNG: a measurement
    drawing from it (not from a fork or keyed noise) would change every later training step."""
    config = {"model": "python:tests.Dropout", "steps": 1}
    on = train(small_config(track_grad_align=True, track_test_sample=True, **config),
               data=fashion_small, model=_dropout_model())  # fmt: skip
    off = train(small_config(track_train_sample=False, **config), data=fashion_small,
                model=_dropout_model())  # fmt: skip
    assert all(key in record for record in on.history for key in TRACKED)
    assert not any(key.startswith(("train_sample", "test_sample", "val_grad")) for key in
                   off.history[0])  # fmt: skip
    a, b = on.model.state_dict(), off.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    same = ["train_loss", "train_acc", "val_clean", "val_pgd"]
    assert [[r[k] for k in same] for r in on.history] == [[r[k] for k in same] for r in off.history]


def test_the_training_sample_is_measured_like_validation(fashion_small, tmp_path):
    """Validation on the training sample itself gives the train-sample numbers."""
    from advkit.training import Trainer
    from advkit.training.validation import clean_and_pgd

    trainer = Trainer(small_config(epochs=1), tmp_path, data=fashion_small)
    sample = trainer.tracking.samples["train_sample"]
    assert len(sample) == 128
    trained = trainer.fit().history[-1]
    measured = clean_and_pgd(trainer._eval_model(), sample, eps=0.1, steps=3, batch_size=256)
    assert measured["pgd"] == pytest.approx(trained["train_sample_pgd"])
    assert measured["clean_loss"] == pytest.approx(trained["train_sample_clean_loss"])


def test_tracking_may_change_on_resume():
    run = TrainConfig()
    changed = TrainConfig(track_grad_align=True, track_train_sample=False, track_test_sample=True)
    assert resume_changes(run, changed) == {
        "track_grad_align": (False, True), "track_train_sample": (True, False),
        "track_test_sample": (False, True),
    }  # fmt: skip


def test_the_curves_get_a_gradient_alignment_panel_and_the_log_line_the_sample():
    records = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_clean": 0.6, "val_pgd": 0.3,
                "train_sample_pgd": 0.4, "val_grad_align": 0.9 - 0.1 * e, "lr": 0.1,
                "train_seconds": float(e)} for e in (1, 2)]  # fmt: skip
    figure = curves_figure(records)
    assert len(figure.axes) == 3
    assert [line.get_label() for line in figure.axes[1].get_lines()][-1] == "train sample PGD"
    assert figure.axes[2].get_lines()[0].get_ydata().tolist() == pytest.approx([0.8, 0.7])
    assert (
        len(curves_figure([{k: v for k, v in records[0].items() if k != "val_grad_align"}]).axes)
        == 2
    )
    line = epoch_line(records, 2)
    assert "train sample PGD 40.0%" in line and "grad align 0.700" in line
    assert "sample_pgd 0.4" not in line
