"""Helpers for the training-method tests: a fake trainer, a recording wrapper, small models."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from advkit.config import TrainConfig
from advkit.methods import METHODS, Method, StepContext


class FakeTrainer:
    """The trainer's half of the method contract, and no more: SGD, zero-grad with set_to_none.

    ``optimize`` asserts that no parameter has a ``.grad`` when it is called: it clears them after
    its own step, so one found there was left by an attack (the real trainer would add it in).
    """

    def __init__(self, model: nn.Module, lr: float = 0.05, momentum: float = 0.9) -> None:
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        self.updates = 0

    def optimize(self, loss: Tensor) -> None:
        leaked = [name for name, p in self.model.named_parameters() if p.grad is not None]
        assert not leaked, f"an attack left .grad on parameters {leaked}"
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1

    def context(self, eps: float) -> StepContext:
        return StepContext(
            model=self.model, attack_model=self.model, optimize=self.optimize, eps=eps
        )


class _CountBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, inputs: Tensor, recorder: Recorder) -> Tensor:
        ctx.recorder = recorder
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        ctx.recorder.input_backwards += 1
        return grad, None


class Recorder(nn.Module):
    """Wraps a model: records each batch and mode it sees, counts backward passes into the input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[Tensor] = []
        self.modes: list[bool] = []  # the wrapped model's .training at each forward
        self.input_backwards = 0

    def forward(self, inputs: Tensor) -> Tensor:
        self.inputs.append(inputs.detach().clone())
        self.modes.append(self.model.training)
        return self.model(_CountBackward.apply(inputs, self))


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """A 2-conv net for 1x28x28 inputs, with BatchNorm so train/eval mode matters."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 7 * 7, num_classes),
    )  # fmt: skip


def method_config(**overrides: Any) -> TrainConfig:
    """The real config with small attack settings (3 steps, 2 replays), eps 0.1."""
    return dataclasses.replace(
        TrainConfig(), **({"eps": 0.1, "steps": 3, "replays": 2} | overrides)
    )


def build(name: str, **overrides: Any) -> Method:
    return METHODS.get(name).from_config(method_config(**overrides))


def random_batch(n: int = 16, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(n, 1, 28, 28, generator=generator)
    inputs[:, :, :4] = 0.0  # some pixels on the box edges, like real digits
    inputs[:, :, -4:] = 1.0
    return inputs, torch.randint(0, 10, (n,), generator=generator)
