"""Tiny models and data for the evaluation tests: 1x8x8 inputs, 5 classes, CPU, one thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_CLASSES = 5
SHAPE = (1, 8, 8)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The machine is shared: a single thread is faster than contended ones for tiny models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, NUM_CLASSES)).eval()


class Softmaxed(nn.Module):
    """Returns probabilities instead of logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).softmax(dim=1)


class RandomInEval(nn.Module):
    """Dropout that stays on in eval mode: a random model."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(F.dropout(x, p=0.5, training=True))


class Quantized(nn.Module):
    """Rounds the input to 4 levels first: zero gradient everywhere (masked), yet not robust."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(torch.round(x * 3) / 3)


class Constant(nn.Module):
    """Always predicts class 0, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([5.0] + [0.0] * (NUM_CLASSES - 1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.bias.expand(len(x), -1) + 0 * x.flatten(1)[:, :1]


@pytest.fixture
def model() -> nn.Module:
    return linear_model()


@pytest.fixture
def softmax_model() -> nn.Module:
    return Softmaxed(linear_model())


@pytest.fixture
def random_model() -> nn.Module:
    return RandomInEval(linear_model())


@pytest.fixture
def masked_model() -> nn.Module:
    return Quantized(linear_model())


@pytest.fixture
def constant_model() -> nn.Module:
    return Constant()


@pytest.fixture
def data(model: nn.Module) -> tuple[Tensor, Tensor]:
    """40 inputs in [0, 1]; labels are the model's predictions except for 6 flipped ones."""
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(40, *SHAPE, generator=generator)
    with torch.no_grad():
        labels = model(inputs).argmax(dim=1)
    labels[:6] = (labels[:6] + 1) % NUM_CLASSES
    return inputs, labels
