"""IBP training: Gowal et al.'s loss and kappa schedule, the trainer's eps hold, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from advkit.bounds import margin_lower_bounds
from advkit.cli import main
from advkit.config import ConfigError, TrainConfig
from advkit.training.eps_schedule import ramped_eps
from tests.conftest import requires_fashion_mnist
from tests.methods.methods_support import FakeTrainer, build, random_batch, tiny_cnn


def test_kappa_falls_from_one_to_its_final_value_as_eps_ramps_up() -> None:
    method = build("ibp", eps=0.2, kappa=0.4)
    assert method.kappa_at(0.0) == 1.0
    assert method.kappa_at(0.1) == pytest.approx(0.7)
    assert method.kappa_at(0.2) == pytest.approx(0.4) == method.kappa_at(0.3)


def test_the_eps_hold_keeps_eps_at_zero_then_ramps() -> None:
    assert ramped_eps(0.3, 2.0, 0.5, hold=1.0) == 0.0
    assert ramped_eps(0.3, 2.0, 2.0, hold=1.0) == pytest.approx(0.15)
    assert ramped_eps(0.3, 2.0, 3.5, hold=1.0) == pytest.approx(0.3)
    assert ramped_eps(0.3, 0.0, 1.01, hold=1.0) == 0.3


def test_the_step_minimizes_gowals_loss_at_full_eps() -> None:
    """kappa * CE(clean) + (1 - kappa) * CE(worst-case logits), computed here independently."""
    torch.manual_seed(0)
    model = tiny_cnn()
    method = build("ibp", eps=0.1, kappa=0.5)
    inputs, labels = random_batch(8)
    losses = []
    trainer = FakeTrainer(model)
    trainer.optimize = lambda loss: losses.append(loss.detach())  # no update: compare first
    out = method.step(inputs, labels, trainer.context(eps=0.1))
    model.train()
    clean = F.cross_entropy(model(inputs), labels)
    lower, upper = (inputs - 0.1).clamp(0, 1), (inputs + 0.1).clamp(0, 1)
    margins = margin_lower_bounds(model, lower, upper, labels, batch_stats=_stats(model, inputs))
    expected = 0.5 * clean + 0.5 * F.cross_entropy(-margins, labels)
    torch.testing.assert_close(losses[0], expected.detach())
    assert out.metrics["kappa"] == 0.5 and 0 <= out.metrics["verified"] <= 1


def _stats(model: torch.nn.Module, inputs: torch.Tensor) -> dict:
    hidden = model[0](inputs)  # the BatchNorm's input: tiny_cnn's first conv
    dims = [0, 2, 3]
    return {"1": (hidden.mean(dims), hidden.var(dims, unbiased=False))}


def test_the_warm_up_trains_on_the_clean_loss_alone() -> None:
    torch.manual_seed(0)
    method = build("ibp", eps=0.1)
    trainer = FakeTrainer(tiny_cnn())
    inputs, labels = random_batch(8)
    out = method.step(inputs, labels, trainer.context(eps=0.0))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels), rtol=0, atol=1e-6)
    # At eps 0 the worst case is the clean point: the same metrics, exact, without bounds.
    assert out.metrics["robust_loss"] == out.loss and out.metrics["kappa"] == 1.0
    assert out.metrics["verified"] == (out.logits.argmax(1) == labels).float().mean()


def test_bad_kappa_and_norms_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="kappa"):
        build("ibp", kappa=1.5)
    with pytest.raises(ValueError, match="--norm linf"):
        build("ibp", norm="l2", eps=1.0)
    with pytest.raises(ConfigError, match="kappa"):
        TrainConfig(kappa=-0.1).validate()
    with pytest.raises(ConfigError, match="eps_hold_epochs"):
        TrainConfig(eps_hold_epochs=-1).validate()


def test_ibp_is_listed(capsys) -> None:
    assert main(["methods"]) == 0
    assert "ibp" in capsys.readouterr().out


@requires_fashion_mnist
def test_advkit_train_method_ibp_runs_and_records_its_schedule(tmp_path) -> None:
    run = tmp_path / "ibp"
    args = ["train", "--method", "ibp", "--eps", "0.1", "--kappa", "0.6", "--eps-hold-epochs",
            "0.5", "--eps-warmup-epochs", "0.5", "--subset", "256", "--val-size", "64",
            "--val-examples", "32", "--epochs", "1", "--batch-size", "64", "--quiet",
            "--out", str(run)]  # fmt: skip
    assert main(args) == 0
    text = (run / "config.yaml").read_text()
    assert "kappa: 0.6" in text and "eps_hold_epochs: 0.5" in text
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # 4 steps: two held at eps 0 (kappa 1), then eps 0.05 (kappa 0.8) and 0.1 (kappa 0.6).
    assert record["train_kappa"] == pytest.approx((1 + 1 + 0.8 + 0.6) / 4)
    assert record["eps"] == 0.1 and 0 <= record["train_verified"] <= 1


def test_crown_ibp_mixes_its_bounds_with_beta_falling_over_the_ramp() -> None:
    """beta x CROWN-IBP + (1 - beta) x IBP, beta = 1 - eps / full eps (Zhang et al. 2020)."""
    from advkit.bounds import crown_ibp_margin_lower_bounds

    torch.manual_seed(0)
    model = tiny_cnn().train()
    method = build("ibp", eps=0.1, bounds="crown-ibp")
    inputs, labels = random_batch(8)
    stats = _stats(model, inputs)
    ctx = FakeTrainer(model).context(eps=0.025)  # a quarter of the ramp: beta 0.75
    lower, upper = (inputs - 0.025).clamp(0, 1), (inputs + 0.025).clamp(0, 1)
    ibp = margin_lower_bounds(model, lower, upper, labels, batch_stats=stats)
    crown = crown_ibp_margin_lower_bounds(model, lower, upper, labels, batch_stats=stats)
    expected = 0.75 * crown + 0.25 * ibp
    torch.testing.assert_close(method.margins(ctx, inputs, labels, stats), expected)
    full = FakeTrainer(model).context(eps=0.1)  # the end of the ramp: interval bounds alone
    lower, upper = (inputs - 0.1).clamp(0, 1), (inputs + 0.1).clamp(0, 1)
    torch.testing.assert_close(
        method.margins(full, inputs, labels, stats),
        margin_lower_bounds(model, lower, upper, labels, batch_stats=stats),
    )
    out = method.step(inputs, labels, ctx)
    assert torch.isfinite(out.loss) and out.metrics["kappa"] == pytest.approx(0.875)


@pytest.mark.parametrize("option", [{"kappa": 0.3}, {"bounds": "crown-ibp"}])
def test_ibp_options_on_another_method_are_refused(option: dict) -> None:
    with pytest.raises(ConfigError, match="is an option of ibp training; method pgd does not"):
        build("pgd", **option)
