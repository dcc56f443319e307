"""Resuming with another config: which fields may change, how more epochs reshape the LR
schedule, and a resume on other data or with another threat model refused."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields

import pytest
import torch

from advkit import config_resume as config_module
from advkit.config import ConfigError, TrainConfig
from advkit.config_resume import RESUMABLE_FIELDS, resume_changes
from advkit.data import DataError, TensorData
from advkit.training import Trainer, TrainingInterrupted, train
from advkit.training.schedules import cyclic
from tests.training.test_trainer import small_config


def test_every_field_is_resumable_or_named_in_the_refusal():
    unclassified = {f.name for f in fields(TrainConfig)} - RESUMABLE_FIELDS
    unclassified -= set(config_module._DEFINED_BY)
    assert not unclassified


def test_resume_changes_lists_allowed_changes_and_refuses_others():
    run = TrainConfig(epochs=2, eps=0.1)
    assert resume_changes(run, TrainConfig(epochs=2, eps=0.1)) == {}
    assert resume_changes(run, TrainConfig(epochs=5, eps=0.1, device="cpu")) == {
        "epochs": (2, 5), "device": ("auto", "cpu"),
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"^--eps 0.2 differs from the run's 0.1: a resumed run "
                       "keeps its threat model; start a new run with --out$"):  # fmt: skip
        resume_changes(run, TrainConfig(epochs=5, eps=0.2))


def test_guard_check_frequency_may_change_only_while_the_guard_only_measures():
    warn = TrainConfig(co_guard="warn")
    assert resume_changes(warn, dataclasses.replace(warn, co_check_every=5)) == {
        "co_check_every": (0, 5)
    }
    rollback = TrainConfig(co_guard="rollback")
    with pytest.raises(ConfigError, match="--co-check-every 5 differs"):
        resume_changes(rollback, dataclasses.replace(rollback, co_check_every=5))


def _stop_at(step):
    def on_step(trainer, global_step):
        if global_step == step:
            trainer.request_stop()

    return on_step


def test_more_epochs_spread_the_schedule_over_the_new_total(fashion_small, tmp_path):
    """From the resumed update on, the LR is that of a run started with the new epoch count."""
    straight = train(small_config(epochs=4), tmp_path / "straight", data=fashion_small)
    run = tmp_path / "extended"
    with pytest.raises(TrainingInterrupted):  # 8 batches per epoch: stop in epoch 2 of 2
        Trainer(small_config(epochs=2), run, data=fashion_small, on_step=_stop_at(11)).fit()
    trainer = Trainer(small_config(epochs=4), run, data=fashion_small)
    trainer.resume()
    assert trainer.total_updates == 32
    lr = trainer.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(small_config().lr * cyclic(11 / 32), rel=1e-12)
    result = trainer.fit()
    got, want = [r["lr"] for r in result.history], [r["lr"] for r in straight.history]
    assert got[1:] == pytest.approx(want[1:], rel=1e-9)
    assert got[0] != pytest.approx(want[0])  # epoch 1 ran under the 2-epoch schedule
    assert len(result.history) == 4
    (entry,) = [json.loads(x) for x in (run / "resumes.jsonl").read_text().splitlines()]
    assert entry["changes"] == {"epochs": [2, 4]} and entry["step"] == 11


def test_library_resume_refuses_another_threat_model(fashion_small, tmp_path):
    train(small_config(epochs=1), tmp_path, data=fashion_small)
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"--eps 0\.2 differs from the run.s 0\.1"):
        train(small_config(epochs=2, eps=0.2), tmp_path, resume=True, data=fashion_small)
    assert (tmp_path / "config.yaml").read_text() == before


def test_resume_on_other_data_is_refused(fashion_small, tmp_path):
    train(small_config(epochs=1), tmp_path, data=fashion_small)
    part = fashion_small.train
    shuffled = dataclasses.replace(
        fashion_small, train=TensorData(part.images.flip(0), part.labels.flip(0))
    )
    with pytest.raises(DataError, match="trained on: other training images, other training labels"):
        train(small_config(epochs=2), tmp_path, resume=True, data=shuffled)
    smaller = dataclasses.replace(fashion_small, train=part.take(torch.arange(256)))
    with pytest.raises(DataError, match=r"train 256 \(the run's: 512\)"):
        train(small_config(epochs=2), tmp_path, resume=True, data=smaller)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
