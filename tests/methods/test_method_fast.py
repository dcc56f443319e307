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
