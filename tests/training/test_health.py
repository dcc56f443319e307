"""A run that cannot learn or has not learned says so at the epoch it shows (training/health)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import advkit
from advkit.cli import main
from advkit.training.health import (
    class_shares,
    epoch_findings,
    label_entropy,
    start_findings,
    summarize,
)

SHAPE = (1, 8, 8)
FAST = {"epochs": 2, "batch_size": 32, "val_examples": 64, "val_steps": 1, "steps": 1,
        "track_train_sample": False}  # fmt: skip


class Flat(nn.Module):
    """A linear classifier; ``softmax`` makes it return probabilities instead of logits."""

    def __init__(self, classes: int = 4, softmax: bool = False) -> None:
        super().__init__()
        self.head = nn.Linear(64, classes)
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(x.flatten(1))
        return out.softmax(dim=1) if self.softmax else out


def _learnable(n: int = 512, classes: int = 4, seed: int = 0):
    """Class k lights up row band k: a linear model learns it in an epoch."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    images = torch.rand(n, *SHAPE, generator=gen) * 0.2
    for i, k in enumerate(labels.tolist()):
        images[i, :, 2 * k : 2 * k + 2] += 0.7
    return images.clamp(0, 1), labels


def _balanced(classes: int = 10, n: int = 1000) -> torch.Tensor:
    return torch.arange(n) % classes


def test_a_loss_at_ln_c_and_chance_accuracy_is_not_learning():
    shares = class_shares(_balanced(), 10)
    assert label_entropy(shares) == pytest.approx(math.log(10))
    dead = {"epoch": 3, "train_loss": 2.301, "train_acc": 0.11, "val_clean": 0.104}
    (found,) = epoch_findings(dead, shares, shares, 500)
    assert found["kind"] == "not_learning" and found["epoch"] == 3
    assert "ln C" in found["message"] and "--eps-warmup-epochs" in found["message"]


@pytest.mark.parametrize(
    "record",
    [
        {"epoch": 1, "train_loss": 2.301, "train_acc": 0.1, "val_clean": 0.35},  # hard attack
        {"epoch": 1, "train_loss": 1.2, "train_acc": 0.1, "val_clean": 0.11},  # loss falls
        {"epoch": 1, "train_loss": float("nan"), "train_acc": 0.1, "val_clean": 0.1},
    ],
)
def test_learning_or_diverged_epochs_are_not_flagged(record):
    shares = class_shares(_balanced(), 10)
    assert epoch_findings(record, shares, shares, 500) == []


def test_chance_is_the_largest_class_share_and_the_floor_the_label_entropy():
    labels = torch.tensor([0] * 80 + [1] * 20)
    shares = class_shares(labels, 2)
    floor = label_entropy(shares)
    assert floor < math.log(2)
    # Always guessing class 0: 80% accuracy, loss at the entropy of the labels: not learning.
    guess = {"epoch": 1, "train_loss": floor + 0.01, "train_acc": 0.8, "val_clean": 0.8}
    assert [f["kind"] for f in epoch_findings(guess, shares, shares, 100)] == ["not_learning"]
    # Without validation, the training accuracy against the training labels' largest class.
    assert epoch_findings({**guess, "val_clean": None} | {"train_acc": 0.8}, shares, None, 0)


def test_start_findings_name_missing_classes_one_class_validation_and_probabilities():
    probe = torch.rand(4, *SHAPE)
    one_class = torch.zeros(100, dtype=torch.long)
    found = start_findings(Flat(4, softmax=True), probe, one_class, one_class, 4, list("abcd"))
    kinds = {f["kind"]: f["message"] for f in found}
    assert set(kinds) == {"missing_classes", "one_class_validation", "probability_outputs"}
    assert (
        "1 of the model's 4 classes" in kinds["missing_classes"]
        and "b, c, d" in kinds["missing_classes"]
    )
    assert "softmax" in kinds["probability_outputs"]
    assert start_findings(Flat(4), probe, _balanced(4, 100), _balanced(4, 40), 4) == []


def test_summary_keeps_each_kind_once_with_its_epochs():
    history = [
        {"epoch": 1, "health": [{"kind": "missing_classes", "epoch": 0, "message": "m"},
                                {"kind": "not_learning", "epoch": 1, "message": "a"}]},
        {"epoch": 2, "health": [{"kind": "not_learning", "epoch": 2, "message": "b"}]},
        {"epoch": 3},
    ]  # fmt: skip
    summary = {s["kind"]: s for s in summarize(history)}
    assert summary["not_learning"] == {
        "kind": "not_learning", "epochs": [1, 2], "message": "b", "still": False
    }  # fmt: skip
    assert summary["missing_classes"]["still"]


def test_fit_of_a_softmax_model_is_flagged_before_training_and_in_the_record(tmp_path, caplog):
    torch.manual_seed(0)
    with caplog.at_level("WARNING", logger="advkit.train"):
        result = advkit.fit(Flat(4, softmax=True), _learnable(), run_dir=tmp_path / "run",
                            method="natural", **FAST)  # fmt: skip
    assert "probabilities" in caplog.text and "before training" in caplog.text
    assert result.history[0]["health"][0]["kind"] == "probability_outputs"
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["health"][0]["kind"] == "probability_outputs"
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert "probability_outputs" in {h["kind"] for h in meta["health"]}


def test_random_labels_are_said_not_learning_at_the_epoch_and_a_real_task_is_not(tmp_path):
    images, labels = _learnable()
    noise = torch.randint(0, 4, labels.shape, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    dead = advkit.fit(Flat(4), (images, noise), method="natural", lr=0.01, **FAST)
    assert [r["health"][0]["kind"] for r in dead.history] == ["not_learning"] * 2
    torch.manual_seed(0)
    alive = advkit.fit(Flat(4), (images, labels), method="natural", **FAST)
    assert all("health" not in r for r in alive.history)
    assert alive.history[-1]["val_clean"] > 0.9


def test_the_cli_summary_warns_of_a_one_class_training_set(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "one.npz"
    np.savez(data, x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
             y_train=np.full(300, 2), x_test=np.zeros((40, 28, 28), np.uint8),
             y_test=np.arange(40) % 4)  # fmt: skip
    code = main(["train", "--dataset", "npz", "--data-dir", str(data), "--method", "natural",
                 "--epochs", "1", "--val-size", "50", "--quiet", "--no-track-train-sample",
                 "--out", str(tmp_path / "run")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "WARNING" in out and "holds 1 of the model's 4 classes" in out
    assert "validation split holds one class" in out


class NoGrad(Flat):
    """A forward under torch.no_grad(): nothing to train."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super().forward(x)


@pytest.mark.parametrize("method", ["natural", "pgd"])
def test_a_model_without_a_gradient_path_is_a_user_error_not_a_crash(method):
    from advkit.errors import UserError
    from advkit.training.trainer import NoGradientError

    with pytest.raises(NoGradientError, match=r"torch\.no_grad") as caught:
        advkit.fit(NoGrad(4), _learnable(64), method=method, **FAST)
    assert isinstance(caught.value, UserError)
