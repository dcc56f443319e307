"""DAT's layer-wise adaptive learning rate: hand computations, edge cases, state, resume, LAMB."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from advkit.config import ConfigError, TrainConfig, load_config
from advkit.training import Trainer, TrainingInterrupted
from advkit.training.lalr import LALR
from advkit.training.optim import build_optimizer, scaled_lr


def _param(values) -> nn.Parameter:
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_adam_base_matches_a_hand_computation():
    weight = _param([[3.0, 0.0], [0.0, 4.0]])  # norm 5
    grad = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64)
    optimizer = LALR([weight], lr=0.1, base="adam", betas=(0.9, 0.99), eps=1e-6,
                     weight_decay=0.01)  # fmt: skip
    weight.grad = grad.clone()
    before = weight.detach().clone()
    optimizer.step()
    m, v = 0.1 * grad, 0.01 * grad**2  # no bias correction
    u = m / (v.sqrt() + 1e-6) + 0.01 * before
    expected = before - 0.1 * (5.0 / u.norm()) * u
    torch.testing.assert_close(weight.detach(), expected, rtol=1e-12, atol=1e-12)
    # The layer moved by lr times its weight norm, whatever the gradient's scale.
    assert math.isclose((weight.detach() - before).norm().item(), 0.5, rel_tol=1e-12)


def test_sgd_base_uses_momentum_over_steps():
    weight = _param([1.0, 2.0, 2.0])  # norm 3
    optimizer = LALR([weight], lr=0.01, base="sgd", momentum=0.9)
    grads = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])]
    buffer = None
    for grad in grads:
        before = weight.detach().clone()
        weight.grad = grad.double()
        optimizer.step()
        buffer = grad.double() if buffer is None else 0.9 * buffer + grad.double()
        expected = before - 0.01 * (before.norm() / buffer.norm()) * buffer
        torch.testing.assert_close(weight.detach(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("values", "clip", "tau"),
    [([12.0, 16.0], (0.0, 10.0), 10.0), ([0.3, 0.4], (1.0, 10.0), 1.0), ([3.0, 4.0], (0, 10), 5.0)],
)
def test_the_weight_norm_is_clipped(values, clip, tau):
    weight = _param(values)
    optimizer = LALR([weight], lr=0.1, base="sgd", momentum=0.0, clip=clip)
    weight.grad = torch.tensor([0.0, 7.0], dtype=torch.float64)
    before = weight.detach().clone()
    optimizer.step()
    torch.testing.assert_close(weight.detach() - before, torch.tensor([0.0, -0.1 * tau]).double())


def test_zero_norms_give_ratio_one():
    zero_weight = _param([0.0, 0.0])  # tau(0) = 0 with c_l = 0: ratio 1, so it still moves
    still = _param([1.0, 1.0])  # zero gradient: nothing to move along
    optimizer = LALR([zero_weight, still], lr=0.5, base="sgd", momentum=0.0)
    zero_weight.grad = torch.tensor([2.0, 0.0], dtype=torch.float64)
    still.grad = torch.zeros(2, dtype=torch.float64)
    optimizer.step()
    torch.testing.assert_close(zero_weight.detach(), torch.tensor([-1.0, 0.0]).double())
    torch.testing.assert_close(still.detach(), torch.tensor([1.0, 1.0]).double())


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def _config(**values) -> TrainConfig:
    return TrainConfig(**({"optimizer": "lalr", "lr": 0.02, "weight_decay": 0.0} | values))


def test_exclude_1d_takes_the_plain_step_for_biases_and_norm_layers():
    model = _tiny()
    optimizer = build_optimizer(model, _config(lalr_base="sgd", momentum=0.0,
                                               lalr_exclude_1d=True))  # fmt: skip
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 3.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer.step()
    for name, parameter in model.named_parameters():
        moved = before[name] - parameter.detach()
        if parameter.ndim == 1:  # plain SGD: lr * grad
            torch.testing.assert_close(moved, torch.full_like(moved, 0.06))
        else:  # adapted: the layer moves by lr * ||theta||
            assert math.isclose(moved.norm().item(), 0.02 * before[name].norm().item(),
                                rel_tol=1e-5)  # fmt: skip
    adapted = build_optimizer(model, _config())
    assert all(group["adapt"] for group in adapted.param_groups)


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, seeds: range) -> None:
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        for parameter in model.parameters():
            parameter.grad = torch.randn(parameter.shape, generator=generator)
        optimizer.step()


@pytest.mark.parametrize("base", ["adam", "sgd"])
def test_state_dict_round_trip_continues_exactly(base):
    model = _tiny()
    optimizer = build_optimizer(model, _config(lalr_base=base, weight_decay=1e-3))
    _steps(model, optimizer, range(3))
    copy_model = _tiny(seed=1)
    copy_model.load_state_dict(model.state_dict())
    copy_optimizer = build_optimizer(copy_model, _config(lalr_base=base, weight_decay=1e-3))
    copy_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as from a file
    _steps(model, optimizer, range(3, 6))
    _steps(copy_model, copy_optimizer, range(3, 6))
    for mine, theirs in zip(model.parameters(), copy_model.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_adam_base_equals_an_existing_lamb_implementation():
    """torch-optimizer's Lamb without debiasing and with its weight-norm clamp of 10 is DAT's
    update (DAT's code started from the same LAMB)."""
    torch_optimizer = pytest.importorskip("torch_optimizer")
    ours, theirs = _tiny(), _tiny()
    lalr = LALR(ours.parameters(), lr=0.01, base="adam", weight_decay=1e-2, clip=(0.0, 10.0))
    lamb = torch_optimizer.Lamb(theirs.parameters(), lr=0.01, eps=1e-6, weight_decay=1e-2,
                                clamp_value=10, debias=False)  # fmt: skip
    _steps(ours, lalr, range(20))
    _steps(theirs, lamb, range(20))
    for mine, other in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-5, atol=1e-6)


def test_learning_rate_scales_with_the_batch():
    assert scaled_lr(_config(batch_size=512, lr_scaling="none")) == 0.02
    assert math.isclose(scaled_lr(_config(batch_size=512, lr_scaling="sqrt")), 0.04)
    assert math.isclose(scaled_lr(_config(batch_size=512, lr_scaling="linear")), 0.08)
    assert math.isclose(
        scaled_lr(_config(batch_size=64, base_batch_size=256, lr_scaling="linear")), 0.005
    )
    optimizer = build_optimizer(_tiny(), _config(batch_size=1024, lr_scaling="linear"))
    assert all(math.isclose(g["lr"], 0.16) for g in optimizer.param_groups)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lalr_base": "sgd"}, "--lalr-base sets the layer-wise adaptive optimizer"),
        ({"lalr_clip": [0, 5]}, "--lalr-clip sets the layer-wise"),
        ({"lalr_exclude_1d": True}, "add --optimizer lalr"),
        ({"optimizer": "lalr", "lalr_clip": [10, 1]}, "0 <= C_L <= C_U, got 10 1"),
        ({"optimizer": "lalr", "lalr_clip": [-1, 1]}, "0 <= C_L <= C_U"),
        ({"optimizer": "lalr", "lalr_clip": "3"}, "two numbers"),
        ({"optimizer": "lalr", "lalr_base": "lion"}, "lalr_base must be one of adam, sgd"),
        ({"lr_scaling": "cubic"}, "lr_scaling must be one of"),
        ({"base_batch_size": 0}, "base_batch_size must be >= 1"),
    ],
)
def test_bad_lalr_options_say_what_to_change(values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, values)


def test_a_resumed_lalr_run_matches_the_uninterrupted_one(fashion_small, tmp_path):
    config = TrainConfig(
        method="fast", model="cnn-small", epochs=2, batch_size=64, optimizer="lalr", lr=0.01,
        lalr_exclude_1d=True, lr_scaling="sqrt", clean_weight=1.0, val_examples=64,
        val_steps=2, quiet=True, seed=1,
    )  # fmt: skip
    straight = Trainer(config, tmp_path / "straight", data=fashion_small).fit().model

    def stop(trainer: Trainer, step: int) -> None:
        if step == 5:
            trainer.request_stop()

    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "resumed", data=fashion_small, on_step=stop).fit()
    resumed = Trainer(config, tmp_path / "resumed", data=fashion_small)
    resumed.resume()
    again = resumed.fit().model
    for name, value in straight.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
