"""``--log tensorboard`` and ``--log csv``: the per-epoch metrics, read back with TensorBoard's
own event reader and the csv module, once per epoch even across a resume."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from advkit.cli import main
from advkit.config import ConfigError, TrainConfig
from advkit.training import Trainer, TrainingInterrupted
from advkit.training.metric_logs import LogError, check_logs
from tests.conftest import requires_fashion_mnist


def _config(**values) -> TrainConfig:
    return TrainConfig(**({
        "method": "fast", "epochs": 3, "batch_size": 64, "val_examples": 64, "val_steps": 2,
        "quiet": True, "seed": 2, "log": ["tensorboard", "csv"],
    } | values))  # fmt: skip


def test_a_resumed_run_logs_each_epoch_once(fashion_small, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = tmp_path / "run"

    def stop(trainer: Trainer, step: int) -> None:
        if step == 12:  # epoch 2 of 3, 8 batches each
            trainer.request_stop()

    with pytest.raises(TrainingInterrupted):
        Trainer(_config(), run, data=fashion_small, on_step=stop).fit()
    resumed = Trainer(_config(), run, data=fashion_small)
    resumed.resume()
    resumed.fit()
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = accumulator.EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "train_acc", "val_pgd", "lr", "epoch_seconds"} <= tags
    for key in ("train_loss", "val_pgd", "lr"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2, 3], key  # epoch 1 logged once, not twice
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in history], rel=1e-6)
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["train_loss"]) for r in rows] == [r["train_loss"] for r in history]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_log_names_are_checked_before_training(monkeypatch):
    with pytest.raises(ConfigError, match="expected names"):
        TrainConfig(log=[1])
    assert TrainConfig(log="csv, tensorboard").log == ["csv", "tensorboard"]
    with pytest.raises(LogError, match="--log must be one of csv, tensorboard, got 'wandb'"):
        check_logs(["wandb"])
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(LogError, match=r"pip install 'advkit\[tensorboard\]'"):
        check_logs(["csv", "tensorboard"])
    check_logs(["csv"])


@requires_fashion_mnist
def test_an_unknown_log_is_one_line_from_the_cli(tmp_path, capsys):
    assert main(["train", "--log", "wandb", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--log must be one of csv, tensorboard" in err and len(err.strip().splitlines()) == 1
