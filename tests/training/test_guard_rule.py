"""The guard's collapse rule on given accuracies, and what the trainer does with its verdicts."""

from __future__ import annotations

import pytest
import torch

from advkit.data import TensorData
from advkit.training import guard as guard_module
from advkit.training.guard import CatastrophicOverfittingGuard


def verdicts(monkeypatch, readings, max_drop=0.2):
    """The guard's verdicts for a sequence of (clean, fgsm, pgd) accuracies."""
    queue = list(readings)
    monkeypatch.setattr(
        guard_module, "accuracies",
        lambda *args, **kwargs: dict(zip(("clean", "fgsm", "pgd"), queue.pop(0), strict=True)),
    )  # fmt: skip
    guard = CatastrophicOverfittingGuard(mode="warn", max_drop=max_drop)
    data = TensorData(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    return [guard.check(torch.nn.Identity(), data, 0.3, "linf").collapsed for _ in readings]


def test_an_early_collapse_from_a_low_best_is_caught(monkeypatch):
    # MNIST fast training, seed 1: PGD accuracy 10% -> 20% -> 3.5% while FGSM accuracy rose.
    readings = [(0.91, 0.40, 0.10), (0.96, 0.55, 0.20), (0.95, 0.90, 0.035)]
    assert verdicts(monkeypatch, readings) == [False, False, True]


def test_ordinary_fluctuations_are_not_a_collapse(monkeypatch):
    readings = [(0.96, 0.80, 0.75), (0.97, 0.88, 0.87), (0.97, 0.86, 0.84), (0.98, 0.89, 0.88)]
    assert verdicts(monkeypatch, readings) == [False] * 4


def test_fgsm_above_clean_is_a_collapse(monkeypatch):
    assert verdicts(monkeypatch, [(0.90, 0.93, 0.80)]) == [True]


@pytest.mark.parametrize("max_drop", [0.1, 0.5])
def test_the_drop_is_a_fraction_of_the_best(monkeypatch, max_drop):
    readings = [(0.9, 0.8, 0.60), (0.9, 0.8, 0.45)]  # a 25% relative drop
    assert verdicts(monkeypatch, readings, max_drop) == [False, max_drop < 0.25]


def test_rollbacks_are_bounded_then_training_stops(fashion_small, monkeypatch):
    """A model that keeps collapsing is rolled back max_rollbacks times, then training stops
    (rather than shrinking the attack step towards zero, which is natural training)."""
    from advkit.config import TrainConfig
    from advkit.training import Trainer
    from advkit.training.guard import GuardVerdict

    config = TrainConfig(
        method="fast", epochs=3, batch_size=64, val_examples=64, val_steps=2, co_guard="rollback",
        co_check_every=1, co_max_rollbacks=2, quiet=True,
    )  # fmt: skip
    trainer = Trainer(config, data=fashion_small)
    calls = []

    def check(*args, **kwargs):
        calls.append(trainer.global_step)
        collapsed = len(calls) > 1
        trainer.guard.collapses += collapsed
        return GuardVerdict(0.9, 0.5, 0.4, collapsed, "fake" if collapsed else "")

    monkeypatch.setattr(trainer.guard, "check", check)
    result = trainer.fit()
    assert trainer.guard.stopped and trainer.guard.collapses == 3
    assert trainer.method.step_scale == 0.25  # two rollbacks, each x0.5
    assert calls[:4] == [1, 2, 3, 4]  # the fourth check (third collapse) stopped it mid-epoch
    assert trainer.global_step == 4 and len(result.history) == 1


def test_a_relative_drop_from_a_tiny_best_is_noise(monkeypatch):
    readings = [(0.6, 0.05, 0.005), (0.7, 0.04, 0.002), (0.8, 0.3, 0.10), (0.85, 0.5, 0.04)]
    assert verdicts(monkeypatch, readings) == [False, False, False, True]


def test_measuring_during_training_does_not_change_the_training_run(fashion_small):
    """Guard checks draw their attacks' random starts from a forked, seeded RNG: a run with
    checks every step ends with the same weights as a run without them, and two measurements of
    the same weights agree. (Checks used to draw from the training RNG and change the run.)

    Compared bit for bit: the two runs share the process, data, shapes and thread count, and the
    checks only read the weights, so the training arithmetic is the same; a difference is a
    side effect of the checks (RNG, BatchNorm statistics), however small."""
    from advkit.config import TrainConfig
    from advkit.training import Trainer

    def final_weights(guard: str) -> dict[str, torch.Tensor]:
        config = TrainConfig(
            method="fast", epochs=1, batch_size=64, val_examples=64, val_steps=2, co_guard=guard,
            co_check_every=2, quiet=True,
        )  # fmt: skip
        trainer = Trainer(config, data=fashion_small)
        trainer.fit()
        return trainer.model.state_dict()

    checked, unchecked = final_weights("warn"), final_weights("off")
    for name, value in checked.items():
        torch.testing.assert_close(value, unchecked[name], rtol=0, atol=0, msg=name)


def test_a_measurement_draws_the_same_numbers_and_leaves_the_callers_rng_alone(fashion_small):
    from advkit.training.validation import accuracies

    draws: list[float] = []

    def noisy_identity(model, inputs, labels):
        draws.append(torch.rand(()).item())
        return inputs

    attacks = {"noise": noisy_identity}
    torch.manual_seed(1)
    state = torch.get_rng_state()
    accuracies(torch.nn.Flatten(), fashion_small.val, attacks, batch_size=128)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(7)  # the caller's RNG moves on; the measurement does not follow it
    accuracies(torch.nn.Flatten(), fashion_small.val, attacks, batch_size=128)
    # Exact: the same seeded generator replayed gives the same numbers (no arithmetic involved).
    assert len(draws) == 4 and draws[:2] == draws[2:] and draws[0] != draws[1]


def test_mid_epoch_checks_are_recorded_and_the_epoch_end_is_not_checked_twice(
    fashion_small, monkeypatch
):
    from advkit.config import TrainConfig
    from advkit.training import Trainer
    from advkit.training.guard import GuardVerdict

    config = TrainConfig(
        method="fast", epochs=2, batch_size=64, val_examples=64, val_steps=2, co_guard="warn",
        co_check_every=4, quiet=True,
    )  # fmt: skip
    trainer = Trainer(config, data=fashion_small)  # 512 images: 8 steps per epoch
    steps = []

    def check(*args, **kwargs):
        steps.append(trainer.global_step)
        return GuardVerdict(0.9, 0.5, 0.4 + 0.01 * len(steps), False)

    monkeypatch.setattr(trainer.guard, "check", check)
    history = trainer.fit().history
    assert steps == [4, 8, 12, 16]  # step 8 and 16 end their epochs: measured once each
    assert [c["step"] for c in history[0]["co_checks"]] == [4, 8]
    assert history[1]["co_checks"][0]["co_pgd"] == pytest.approx(0.43)
    assert history[1]["co_pgd"] == pytest.approx(0.44)  # the epoch's own check is the last one
