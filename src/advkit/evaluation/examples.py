"""A few adversarial examples for the report's image grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advkit.data.tensors import unit_float
from advkit.evaluation.evaluate import model_device, predict
from advkit.evaluation.suites import Suite


@dataclass
class Examples:
    """Clean and adversarial images (N, C, H, W) in [0, 1], true labels and both predictions."""

    attack: str
    clean: Tensor
    adversarial: Tensor
    labels: Tensor
    clean_predictions: Tensor
    adversarial_predictions: Tensor


def attack_examples(
    model: nn.Module, inputs: Tensor, labels: Tensor, suite: Suite, *, count: int = 8, seed: int = 0
) -> Examples:
    """Run the suite's example attack on the first ``count`` correctly classified inputs (the
    first ``count`` inputs if too few are correct)."""
    device = model_device(model)
    inputs, labels = unit_float(inputs).to(device), labels.to(device)
    correct = predict(model, inputs).eq(labels).nonzero().squeeze(1)
    index = (
        correct[:count] if len(correct) else torch.arange(min(count, len(labels)), device=device)
    )
    clean, labels = inputs[index], labels[index]
    name = suite.example_attack if suite.example_attack in suite.names() else suite.names()[0]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        adversarial = suite.entry(name).attack(model, clean, labels)
    return Examples(
        attack=name, clean=clean.cpu(), adversarial=adversarial.detach().cpu(),
        labels=labels.cpu(), clean_predictions=predict(model, clean).cpu(),
        adversarial_predictions=predict(model, adversarial).cpu(),
    )  # fmt: skip
