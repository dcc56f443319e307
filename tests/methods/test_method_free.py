"""Free adversarial training: one forward-backward per replay, a perturbation that persists."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from advkit.methods.free import FreeTraining
from advkit.threat import get_threat
from tests.methods.methods_support import FakeTrainer, Recorder, build, random_batch, tiny_cnn


def test_one_forward_and_one_backward_per_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_extra_backward(*args: object, **kwargs: object) -> None:
        raise AssertionError("Free-AT takes its input gradient from the weight update's backward")

    monkeypatch.setattr(torch.autograd, "grad", no_extra_backward)
    method = FreeTraining(replays=3)
    model = Recorder(tiny_cnn())
    trainer = FakeTrainer(model)
    for seed in range(2):
        method.step(*random_batch(16, seed), trainer.context(eps=0.1))
    assert method.updates_per_batch == 3
    assert trainer.updates == len(model.inputs) == model.input_backwards == 2 * 3
    assert all(model.modes), "the one forward updates the weights: train mode"


def test_matches_algorithm_1_of_the_paper() -> None:
    """Shafahi et al., Alg. 1 written out with plain autograd, over two minibatches; the carried
    delta is first clipped so that the new images plus delta lie in [0, 1]."""
    eps, replays = 0.1, 3
    batches = [random_batch(16, seed) for seed in range(2)]
    reference = tiny_cnn()
    model = copy.deepcopy(reference)

    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    delta = torch.zeros_like(batches[0][0])
    for inputs, labels in batches:
        delta = (inputs + delta).clamp(0, 1) - inputs
        for _ in range(replays):
            delta = delta.detach().requires_grad_(True)
            loss = F.cross_entropy(reference(inputs + delta), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            delta = (delta + eps * delta.grad.sign()).clamp(-eps, eps)
            delta = (inputs + delta).clamp(0, 1) - inputs
        delta = delta.detach()  # the next minibatch starts from it

    method, trainer = FreeTraining(replays=replays), FakeTrainer(model)
    for inputs, labels in batches:
        method.step(inputs, labels, trainer.context(eps=eps))
    torch.testing.assert_close(method.state_dict()["delta"], delta)
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want)


def test_short_last_batch_uses_the_first_rows_and_a_new_shape_resets() -> None:
    method, trainer = FreeTraining(replays=2), FakeTrainer(tiny_cnn())
    method.step(*random_batch(16, 0), trainer.context(eps=0.1))
    before = method.state_dict()["delta"]
    method.step(*random_batch(10, 1), trainer.context(eps=0.1))
    after = method.state_dict()["delta"]
    assert after.shape == before.shape
    # Exact: rows 10-15 are not computed on at all, only carried over.
    torch.testing.assert_close(after[10:], before[10:], rtol=0, atol=0)
    assert not torch.equal(after[:10], before[:10])

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(400, 10))
    inputs, labels = torch.rand(4, 1, 20, 20), torch.zeros(4, dtype=torch.long)
    method.step(inputs, labels, FakeTrainer(model).context(eps=0.1))
    assert method.state_dict()["delta"].shape == (4, 1, 20, 20)


def test_carried_delta_is_projected_when_eps_shrinks() -> None:
    """Under an eps warm-up (or a new batch) the carried perturbation is made feasible first."""
    method, model = FreeTraining(replays=2), Recorder(tiny_cnn())
    trainer = FakeTrainer(model)
    method.step(*random_batch(16, 0), trainer.context(eps=0.3))
    model.inputs.clear()
    inputs, labels = random_batch(16, 1)
    method.step(inputs, labels, trainer.context(eps=0.05))
    for seen in model.inputs:
        assert get_threat("linf").norm(seen - inputs).max() <= 0.05 + 1e-6


def test_step_size_and_replays_come_from_the_config() -> None:
    method = build("free", replays=5, step_size=0.01)
    assert (method.replays, method.updates_per_batch, method.step_size) == (5, 5, 0.01)
    assert method.describe()["replays"] == 5
