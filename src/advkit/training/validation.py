"""Accuracy on a held-out split, clean and under attacks, for model selection and the guard."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import Tensor, nn

from advkit.attacks import pgd
from advkit.data import TensorData, iterate_batches

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]


#: Seed of the attacks' random starts in held-out measurements (see ``accuracies``).
MEASUREMENT_SEED = 0


def accuracies(
    model: nn.Module, data: TensorData, attacks: Mapping[str, Attack], batch_size: int = 256
) -> dict[str, float]:
    """Accuracy on ``data`` clean (key "clean") and on each attack's adversarial inputs.

    The model is evaluated in eval mode and its mode restored; counts stay on the device until
    the end. Attacks run in the mapping's order on each batch. Their random draws come from a
    fork of the global RNG seeded with ``MEASUREMENT_SEED``: the caller's RNG stream is left as
    it was (so measuring during training, or measuring more often, does not change the training
    run), and two calls on the same weights give the same numbers (so epochs are compared on the
    same random starts, not on noise).
    """
    device = data.images.device
    hits = {name: torch.zeros((), dtype=torch.long, device=device) for name in ["clean", *attacks]}
    was_training = model.training
    model.eval()
    fork_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(MEASUREMENT_SEED)
            for inputs, labels in iterate_batches(data, batch_size):
                batches = {"clean": inputs} | {
                    name: attack(model, inputs, labels) for name, attack in attacks.items()
                }
                with torch.no_grad():
                    for name, batch in batches.items():
                        hits[name] += (model(batch).argmax(1) == labels).sum()
    finally:
        model.train(was_training)
    n = max(len(data), 1)
    return {name: count.item() / n for name, count in hits.items()}


def robust_accuracy(
    model: nn.Module,
    data: TensorData,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    batch_size: int = 256,
) -> tuple[float, float]:
    """(clean accuracy, accuracy under PGD-``steps`` with step 2.5 * eps / steps), model in eval."""
    attacks = {"pgd": partial(pgd, eps=eps, norm=norm, steps=steps)} if eps > 0 else {}
    result = accuracies(model, data, attacks, batch_size)
    return result["clean"], result.get("pgd", result["clean"])
