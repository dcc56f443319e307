"""The catastrophic-overfitting guard, on catastrophic overfitting provoked on purpose.

FGSM training from a zero start with a step of 2 * eps at a large eps (0.2 on Fashion-MNIST)
on a small CNN loses its PGD robustness within a few epochs while FGSM accuracy stays high.
"""

from __future__ import annotations

import pytest

from advkit.config import TrainConfig
from advkit.data import load_dataset
from advkit.training import Trainer
from tests.conftest import FASHION_DIR

pytestmark = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST missing"
)


@pytest.fixture(scope="module")
def data():
    return load_dataset("fashion-mnist", val_size=512, subset=8192, seed=0)


def co_config(guard: str) -> TrainConfig:
    return TrainConfig(
        method="fast", init="zero", eps=0.2, step_size=0.4, epochs=6, batch_size=64, lr=0.05,
        schedule="constant", val_examples=256, val_steps=5, co_guard=guard, quiet=True, seed=0,
    )  # fmt: skip


def test_guard_catches_catastrophic_overfitting_and_keeps_a_robust_model(data):
    unguarded = Trainer(co_config("warn"), data=data)
    unguarded.fit()
    best_pgd = max(r["co_pgd"] for r in unguarded.history)
    collapsed = [r for r in unguarded.history if r["co_collapsed"]]
    assert collapsed, "the recipe should provoke catastrophic overfitting"
    deepest = min(collapsed, key=lambda r: r["co_pgd"])
    assert deepest["co_pgd"] < best_pgd - 0.2
    assert deepest["co_fgsm"] > deepest["co_pgd"] + 0.3  # FGSM misses the worst case

    guarded = Trainer(co_config("rollback"), data=data)
    result = guarded.fit()
    assert guarded.guard.collapses >= 1
    assert guarded.method.step_scale < 1.0  # rolled back and shrank the attack step
    selected = next(r for r in result.history if r["epoch"] == result.selected_epoch)
    assert not selected["co_collapsed"]
    assert selected["val_pgd"] >= best_pgd - 0.05


def test_stop_mode_ends_training_at_the_collapse(data):
    trainer = Trainer(co_config("stop"), data=data)
    result = trainer.fit()
    assert trainer.guard.stopped
    assert len(result.history) < 6
    assert result.history[-1]["co_collapsed"]
    assert result.selected_epoch < len(result.history)
