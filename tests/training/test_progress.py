"""What a user reads while training: the per-epoch log line and the plan of a run."""

from __future__ import annotations

import json
import logging
import re

import pytest

from advkit.config import TrainConfig
from advkit.training import Trainer, train
from advkit.training.progress import epoch_line, training_plan

RECORD = {
    "epoch": 3, "train_loss": 0.81234567891234, "train_acc": 0.71234567891234,
    "lr": 0.042123456789, "eps": 0.1, "train_seconds": 126.123,
    "val_clean": 0.80123456789, "val_pgd": 0.63412345678,
}  # fmt: skip


def test_epoch_line_is_readable():
    history = [{"train_seconds": 84.0}, {"train_seconds": 84.0}, RECORD]
    line = epoch_line(history, 10)
    assert line == (
        "epoch 3/10  loss 0.812  acc 71.2%  val clean 80.1%  PGD 63.4%  lr 0.0421  42.1 s"
    )


def test_epoch_line_says_how_long_workers_communicated():
    history = [{"train_seconds": 84.0}, RECORD | {"comm_iterations": 27, "comm_seconds": 1.31}]
    assert epoch_line(history, 10).endswith("lr 0.0421  42.1 s (communicating 1.3 s)")
    assert epoch_line([RECORD | {"comm_iterations": 0, "comm_seconds": 0.0}], 10).endswith(" s")


def test_epoch_line_shows_method_metrics_and_the_guard():
    record = RECORD | {"train_kl": 0.123456789, "co_clean": 0.9, "co_fgsm": 0.8,
                       "co_pgd": 0.05, "co_collapsed": True}  # fmt: skip
    line = epoch_line([record], 3)
    assert "kl 0.123" in line and "guard FGSM 80.0% PGD 5.0% COLLAPSED" in line
    assert "2 min 06 s" in line  # the first epoch's time is the run's time so far
    assert not re.search(r"\d\.\d{5,}", line), line


def test_the_trainer_logs_the_readable_line_and_keeps_full_precision(
    fashion_small, tmp_path, caplog
):
    config = TrainConfig(method="pgd", steps=1, epochs=1, batch_size=128, val_examples=64,
                         val_steps=1, quiet=True)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="advkit"):
        train(config, tmp_path, data=fashion_small)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch")]
    assert len(lines) == 1
    assert re.fullmatch(
        r"epoch 1/1  loss \d+\.\d{3}  acc \d+\.\d%  val clean \d+\.\d%  PGD \d+\.\d%  "
        r"train sample PGD \d+\.\d%  lr \S+  \d+\.\d+ s",
        lines[0],
    ), lines[0]
    (saved,) = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert f"{saved['train_loss']:.3f}" in lines[0]
    assert len(repr(saved["train_loss"])) > 8  # the file keeps every digit


@pytest.mark.parametrize(
    ("overrides", "passes", "updates"),
    [
        ({"method": "free", "replays": 4, "epochs": 8, "paper_epochs": True}, 2, 2 * 4 * 4),
        ({"method": "free", "replays": 4, "epochs": 2}, 2, 2 * 4 * 4),
        ({"method": "pgd", "epochs": 3}, 3, 3 * 4),
    ],
)
def test_the_plan_says_what_will_run(fashion_small, overrides, passes, updates):
    """From the trainer, not the config's raw keys: Free-AT's paper epochs are not passes."""
    config = TrainConfig(batch_size=128, quiet=True, **overrides)
    plan = training_plan(Trainer(config, data=fashion_small))  # 512 images: 4 minibatches
    assert f"{passes} passes over 512 training images" in plan
    assert "4 minibatches of 128 per pass" in plan
    assert f": {updates} weight updates" in plan
    assert "linf eps=0.1" in plan and f"{config.method} (" in plan
    assert ("epochs 8 in the Free-AT paper's count" in plan) == config.paper_epochs
