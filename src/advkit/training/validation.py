"""Accuracy on a held-out split, clean and under attacks, for model selection and the guard."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import Tensor, nn

from advkit.attacks import pgd
from advkit.attacks.losses import cross_entropy
from advkit.data import TensorData, num_batches
from advkit.distributed import World
from advkit.training.progress import measurement_bar

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]


#: Seed of the attacks' random starts in held-out measurements (see ``accuracies``).
MEASUREMENT_SEED = 0


def accuracies(
    model: nn.Module,
    data: TensorData,
    attacks: Mapping[str, Attack],
    batch_size: int = 256,
    world: World | None = None,
    *,
    losses: bool = False,
    desc: str = "measuring",
) -> dict[str, float]:
    """Accuracy on ``data`` clean (key "clean") and on each attack's adversarial inputs; with
    ``losses`` also their mean cross-entropy (keys "clean_loss", "<attack>_loss"). During a run
    that shows progress, a bar named ``desc`` counts the batches.

    The model is evaluated in eval mode and its mode restored; counts stay on the device until
    the end. Attacks run in the mapping's order on each batch. Their random draws come from a
    fork of the global RNG seeded from ``MEASUREMENT_SEED`` and the batch's index: the caller's
    RNG stream is left as it was (so measuring during training, or measuring more often, does not
    change the training run), two calls on the same weights give the same numbers (so epochs are
    compared on the same random starts, not on noise), and with several workers (``world``) each
    measures its share of the batches and the counts are summed: the numbers one process gets.
    """
    world = world or World()
    device = data.images.device
    hits = torch.zeros(1 + len(attacks), dtype=torch.long, device=device)
    loss_sums = torch.zeros(1 + len(attacks), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    fork_devices = [device] if device.type == "cuda" else []
    batches = range(num_batches(len(data), batch_size))
    mine = batches[world.shard(len(batches))]
    try:
        with torch.random.fork_rng(devices=fork_devices), measurement_bar(desc, len(mine)) as bar:
            for b in mine:
                torch.manual_seed(MEASUREMENT_SEED * 1_000_003 + b)
                inputs = data.inputs(slice(b * batch_size, (b + 1) * batch_size))
                labels = data.labels[b * batch_size : (b + 1) * batch_size]
                batches = [inputs] + [attack(model, inputs, labels) for attack in attacks.values()]
                with torch.no_grad():
                    for i, batch in enumerate(batches):
                        logits = model(batch)
                        hits[i] += (logits.argmax(1) == labels).sum()
                        if losses:
                            loss_sums[i] += cross_entropy(logits, labels).double().sum()
                bar.update(1)
    finally:
        model.train(was_training)
    names = ["clean", *attacks]
    counts = world.all_reduce_sum(hits).tolist()
    n = max(len(data), 1)
    result = {name: count / n for name, count in zip(names, counts, strict=True)}
    if losses:
        sums = world.all_reduce_sum(loss_sums).tolist()
        result |= {f"{name}_loss": total / n for name, total in zip(names, sums, strict=True)}
    return result


def clean_and_pgd(
    model: nn.Module,
    data: TensorData,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    batch_size: int = 256,
    world: World | None = None,
    losses: bool = True,
    desc: str = "validation",
) -> dict[str, float]:
    """Accuracy (and with ``losses`` mean CE), clean and under PGD-``steps`` (step
    2.5 * eps / steps): keys clean, pgd[, clean_loss, pgd_loss] (at eps 0, PGD is the clean
    input). Model in eval mode; ``desc`` names the bar (see :func:`accuracies`)."""
    attacks = {"pgd": partial(pgd, eps=eps, norm=norm, steps=steps)} if eps > 0 else {}
    result = accuracies(model, data, attacks, batch_size, world, losses=losses, desc=desc)
    if eps <= 0:
        result["pgd"] = result["clean"]
        if losses:
            result["pgd_loss"] = result["clean_loss"]
    return result


def robust_accuracy(
    model: nn.Module,
    data: TensorData,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    batch_size: int = 256,
    world: World | None = None,
) -> tuple[float, float]:
    """(clean accuracy, accuracy under PGD-``steps`` with step 2.5 * eps / steps), model in eval."""
    result = clean_and_pgd(
        model, data, eps=eps, norm=norm, steps=steps, batch_size=batch_size, world=world,
        losses=False,
    )  # fmt: skip
    return result["clean"], result["pgd"]
