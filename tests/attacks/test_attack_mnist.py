"""Attack strength on a small CNN trained quickly on real MNIST digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import apgd, pgd
from tests.conftest import shared_data_file


@pytest.fixture(scope="module")
def mnist_cnn():
    """A two-conv CNN trained for 3 epochs on 3000 MNIST training digits; 200 test digits."""
    data = np.load(shared_data_file("mnist.npz"))

    def tensors(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(data[f"x_{split}"][:count]).float().div(255).unsqueeze(1)
        return images, torch.from_numpy(data[f"y_{split}"][:count]).long()

    train_inputs, train_labels = tensors("train", 3000)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(3):
        for batch in torch.randperm(len(train_inputs)).split(50):
            loss = F.cross_entropy(net(train_inputs[batch]), train_labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    for parameter in net.parameters():
        parameter.grad = None
    return net, *tensors("test", 200)


def _robust(model: nn.Module, adv_inputs: torch.Tensor, labels: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(adv_inputs).argmax(dim=1) == labels).sum())


@pytest.mark.slow
def test_more_steps_and_apgd_are_never_weaker(mnist_cnn) -> None:
    model, inputs, labels = mnist_cnn
    eps = 0.08
    clean = _robust(model, inputs, labels)
    assert clean >= 170  # the CNN learned something
    torch.manual_seed(0)
    pgd20 = _robust(model, pgd(model, inputs, labels, eps=eps, steps=20), labels)
    torch.manual_seed(0)
    pgd100 = _robust(model, pgd(model, inputs, labels, eps=eps, steps=100), labels)
    apgd100 = _robust(model, apgd(model, inputs, labels, eps=eps, steps=100, seed=0), labels)
    assert pgd20 < clean  # the budget matters at all
    assert pgd100 <= pgd20 + 1
    assert apgd100 <= pgd100 + 1
