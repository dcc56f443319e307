"""certify_intervals: verified accuracy never above an attack's robust accuracy, budgets and
inputs checked in one line, a report that states its conditions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from advkit.attacks import pgd
from advkit.bounds import UnsupportedLayerError, certify_intervals
from advkit.errors import BudgetError, InputError
from advkit.methods import METHODS, StepContext
from advkit.models.base import NormalizedModel
from tests.conftest import shared_data_file


def mlp() -> NormalizedModel:
    net = nn.Sequential(
        nn.Conv2d(1, 8, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 14 * 14, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    return NormalizedModel(net, (0.13,), (0.31,))


@pytest.fixture(scope="module")
def ibp_trained() -> tuple[NormalizedModel, torch.Tensor, torch.Tensor]:
    """A small conv net IBP-trained on 1024 MNIST digits at eps 0.1 (eps and kappa ramped over
    the first 50 of 100 steps), and 200 test digits."""
    with np.load(shared_data_file("mnist.npz")) as data:
        train_x, train_y = data["x_train"][:1024], data["y_train"][:1024]
        test_x, test_y = data["x_test"][:200], data["y_test"][:200]

    def tensors(x, y):
        return torch.from_numpy(x).float().div_(255).unsqueeze(1), torch.from_numpy(y).long()

    inputs, labels = tensors(train_x, train_y)
    torch.manual_seed(0)
    model = mlp()
    method = METHODS.get("ibp")(eps=0.1, kappa=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def optimize(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for step in range(100):
        rows = torch.arange(step % 16 * 64, (step % 16 + 1) * 64)
        eps = 0.1 * min(1.0, step / 50)
        ctx = StepContext(model=model, attack_model=model, optimize=optimize, eps=eps, step=step)
        method.step(inputs[rows], labels[rows], ctx)
    return model.eval(), *tensors(test_x, test_y)


def test_verified_inputs_are_never_broken_by_pgd(ibp_trained) -> None:
    model, inputs, labels = ibp_trained
    result = certify_intervals(model, inputs, labels, 0.1, batch_size=64)
    adv = pgd(model, inputs, labels, eps=0.1, steps=20, restarts=2)
    with torch.no_grad():
        robust = model(adv).argmax(1) == labels
    # 25% verified, 66% clean when written: IBP training is what makes the certificates.
    assert result.verified_accuracy > 0.1, "the IBP-trained model should verify some digits"
    assert not (result.verified & ~robust).any(), "a verified input was broken by PGD"
    assert result.verified_accuracy <= float(robust.float().mean()) <= result.clean_accuracy


def test_eps_zero_verifies_exactly_the_correct_inputs(ibp_trained) -> None:
    model, inputs, labels = ibp_trained
    result = certify_intervals(model, inputs, labels, 0.0)
    assert torch.equal(result.verified, result.correct)
    smaller, larger = (certify_intervals(model, inputs, labels, e) for e in (0.05, 0.2))
    assert (larger.verified <= smaller.verified).all(), "a larger box verified more"


def test_the_report_states_eps_counts_and_intervals(ibp_trained) -> None:
    model, inputs, labels = ibp_trained
    model.train()
    result = certify_intervals(model, inputs[:50], labels[:50], 0.1)
    assert model.training, "the model's mode was not restored"
    record = json.loads(json.dumps(result.to_dict()))
    assert record["bounds"] == "ibp" and record["eps"] == 0.1 and record["n"] == 50
    assert record["verified"] == int(result.verified.sum())
    low, high = record["intervals"]["verified"]
    assert low <= result.verified_accuracy <= high
    table = result.markdown()
    assert "eps = 0.1" in table and f"{100 * result.verified_accuracy:.2f}%" in table


@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan")])
def test_eps_outside_the_pixel_range_is_refused_in_one_line(eps: float) -> None:
    with pytest.raises(BudgetError) as error:
        certify_intervals(mlp(), torch.rand(2, 1, 28, 28), torch.tensor([0, 1]), eps)
    assert "\n" not in str(error.value)


def test_bad_inputs_and_unsupported_layers_are_refused() -> None:
    with pytest.raises(InputError, match=r"0\.\.255"):
        certify_intervals(mlp(), torch.rand(2, 1, 28, 28) * 255, torch.tensor([0, 1]), 0.1)
    with pytest.raises(InputError, match="one per input"):
        certify_intervals(mlp(), torch.rand(2, 1, 28, 28), torch.tensor([0]), 0.1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1))
    with pytest.raises(UnsupportedLayerError, match=r"'net\.2' \(Softmax\)"):
        certify_intervals(NormalizedModel(net, (0.5,), (0.5,)), torch.rand(2, 1, 28, 28),
                          torch.tensor([0, 1]), 0.1)  # fmt: skip
