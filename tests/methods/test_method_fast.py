"""Fast adversarial training (FGSM with a random start)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from advkit.methods.fast import FastTraining
from tests.methods.methods_support import FakeTrainer, Recorder, build, random_batch, tiny_cnn


def test_zero_init_step_is_fgsm_on_the_eval_mode_model() -> None:
    eps = 0.1
    inputs, labels = random_batch()
    model = Recorder(tiny_cnn())
    reference = copy.deepcopy(model.model).eval()
    delta = torch.zeros_like(inputs, requires_grad=True)
    (grad,) = torch.autograd.grad(F.cross_entropy(reference(inputs + delta), labels), delta)
    # 1.25 * eps, clipped to the ball, is eps * sign(grad) wherever the gradient is nonzero.
    expected = (inputs + (1.25 * eps * grad.sign()).clamp(-eps, eps)).clamp(0, 1)

    FastTraining(init="zero").step(inputs, labels, FakeTrainer(model).context(eps=eps))
    assert model.modes == [False, True]
    torch.testing.assert_close(model.inputs[1], expected)


@pytest.mark.parametrize("train", [False, True])
def test_attack_mode_follows_attack_train_mode(train: bool) -> None:
    model = Recorder(tiny_cnn())
    build("fast", attack_train_mode=train).step(*random_batch(), FakeTrainer(model).context(0.1))
    assert model.modes == [train, True]


def test_random_init_draws_a_new_start_each_batch() -> None:
    model = Recorder(tiny_cnn())
    method, trainer = FastTraining(init="random", step_size=1e-9), FakeTrainer(model)
    inputs, labels = random_batch()
    for _ in range(2):
        method.step(inputs, labels, trainer.context(eps=0.1))
    starts = [model.inputs[0] - inputs, model.inputs[2] - inputs]
    assert not torch.equal(*starts)
    assert all(s.abs().amax() > 0.09 for s in starts)  # uniform in the ball: some near its edge
    assert method.state_dict() == {"step_scale": 1.0}  # nothing to carry over


def test_previous_init_starts_from_the_last_batch_perturbation() -> None:
    model = Recorder(tiny_cnn())
    method, trainer = FastTraining(init="previous"), FakeTrainer(model)
    first, second = random_batch(16, 0), random_batch(16, 1)
    method.step(*first, trainer.context(eps=0.1))
    carried = model.inputs[1] - first[0]  # the perturbation the weight update was trained on
    torch.testing.assert_close(method.state_dict()["delta"], carried)
    method.step(*second, trainer.context(eps=0.1))
    torch.testing.assert_close(model.inputs[2], (second[0] + carried).clamp(0, 1))


@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 2.0)])
def test_ball_init_takes_the_gradient_outside_the_box_and_returns_a_feasible_step(norm, eps):
    """Wong et al.'s MNIST start: the gradient point may leave [0, 1], the perturbation may not."""
    torch.manual_seed(0)
    inputs, labels = random_batch()
    inputs[:, :, :8] = 0.0  # background pixels, as on MNIST
    model = Recorder(tiny_cnn())
    method = FastTraining(init="ball", norm=norm)
    method.step(inputs, labels, FakeTrainer(model).context(eps=eps))
    gradient_point, trained_on = model.inputs
    assert gradient_point.amin() < 0  # not clipped before the gradient
    delta = trained_on - inputs
    assert trained_on.amin() >= 0 and trained_on.amax() <= 1
    norms = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
    assert norms.amax() <= eps + 1e-6


def test_ball_init_step_matches_the_reference_formula() -> None:
    eps, alpha = 0.3, 0.375
    inputs, labels = random_batch()
    model = Recorder(tiny_cnn())
    reference = copy.deepcopy(model.model).eval()
    torch.manual_seed(3)
    FastTraining(init="ball", step_size=alpha).step(
        inputs, labels, FakeTrainer(model).context(eps=eps)
    )
    torch.manual_seed(3)
    start = ((torch.rand_like(inputs) * 2 - 1) * eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(reference(inputs + start), labels), start)
    delta = (start.detach() + alpha * grad.sign()).clamp(-eps, eps)
    torch.testing.assert_close(model.inputs[1], (inputs + delta).clamp(0, 1))
