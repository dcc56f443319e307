"""Worst-case attack cascade, and the AutoAttack stages (APGD-CE, APGD-T, Square).

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (arXiv:2003.01690). A sample counts as robust only if it is
classified correctly on the clean input and on the output of every stage; each stage attacks only
the samples still robust, so robust accuracy after each stage is non-increasing by construction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor, nn

from advkit.attacks._entry import check_labels_fit, public_attack
from advkit.attacks._mode import attack_mode
from advkit.attacks.apgd import apgd, apgd_targeted
from advkit.attacks.square import square
from advkit.threat import get_threat

#: ``attack(model, inputs, labels) -> adv_inputs``, e.g. ``functools.partial(apgd, eps=8/255)``.
Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass
class AttackStage:
    """One named stage of a cascade: any attack ``f(model, inputs, labels) -> adv_inputs``."""

    name: str
    attack: Callable[..., Tensor]


@dataclass
class CascadeResult:
    """Outcome of :func:`cascade` on N samples and S stages (all tensors on the inputs' device).

    Attributes:
        stage_names: the S stage names, in order.
        clean_correct: (N,) bool, correctly classified without attack.
        robust_masks: (S, N) bool, still correctly classified after stages 0..s.
        broken_by: (N,) int64, index of the stage that first fooled the sample; -1 where no stage
            did (the robust samples, and those already misclassified clean).
        adv_inputs: (N, C, H, W): the successful adversarial input for broken samples, the last
            stage's attempt for robust ones, the clean input for clean-misclassified ones.
        seconds: wall time spent in each stage.
    """

    stage_names: list[str]
    clean_correct: Tensor
    robust_masks: Tensor
    broken_by: Tensor
    adv_inputs: Tensor
    seconds: list[float] = field(default_factory=list)

    @property
    def clean_accuracy(self) -> float:
        return _mean(self.clean_correct)

    @property
    def robust_accuracy(self) -> list[float]:
        """Accuracy after each stage (non-increasing, never above clean accuracy)."""
        return [_mean(mask) for mask in self.robust_masks]

    @property
    def final_robust_accuracy(self) -> float:
        """Accuracy under the whole cascade (clean accuracy when there are no stages)."""
        return self.robust_accuracy[-1] if len(self.stage_names) else self.clean_accuracy

    @property
    def robust(self) -> Tensor:
        """(N,) bool: correctly classified under every stage."""
        return self.robust_masks[-1] if len(self.stage_names) else self.clean_correct

    def summary(self) -> dict[str, float]:
        """{"clean": accuracy, stage name: robust accuracy after that stage, ...}."""
        return {"clean": self.clean_accuracy} | dict(
            zip(self.stage_names, self.robust_accuracy, strict=True)
        )


@public_attack("cascade")
def cascade(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    stages: Sequence[AttackStage],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    eps: float | None = None,
    norm: str = "linf",
    on_stage: Callable[[int, str, int], None] | None = None,
) -> CascadeResult:
    """Run ``stages`` in order, each on the samples no earlier stage (nor the clean input) broke.

    Croce & Hein, ICML 2020 (arXiv:2003.01690). Predictions are taken in eval mode under
    ``torch.no_grad``; each attack sets its own mode. Success is checked here, from the model's
    predictions on each stage's output, never taken from the attack.

    Args:
        model: returns logits for inputs in [0, 1].
        inputs: (N, C, H, W) in [0, 1]; labels: (N,) true labels.
        stages: the attacks, each ``attack(model, inputs, labels) -> adv_inputs``.
        batch_size: samples per chunk given to the model and the attacks (bounds memory).
        device: where chunks are processed (default: the inputs' device); results come back on the
            inputs' device.
        eps, norm: when ``eps`` is given, every stage's output is checked to lie in the ``norm``
            ball of radius ``eps`` (pixel units, 1e-5 slack) and in [0, 1]; a ValueError names
            the offending stage otherwise.
        on_stage: called as each stage starts on a chunk, with the stage's index, its name and
            the examples it attacks (those still robust; 0 when none is left), for progress
            reports (the count is known on the host already: no device synchronization).

    Returns:
        a :class:`CascadeResult` with per-stage robust masks and accuracies.
    """
    names = [stage.name for stage in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if labels.shape != inputs.shape[:1]:
        raise ValueError(
            f"labels must have shape ({len(inputs)},) to match inputs, got {tuple(labels.shape)}"
        )
    home = inputs.device
    device = home if device is None else torch.device(device)
    n = len(inputs)
    clean_correct = torch.zeros(n, dtype=torch.bool, device=home)
    robust_masks = torch.zeros(len(stages), n, dtype=torch.bool, device=home)
    broken_by = torch.full((n,), -1, dtype=torch.long, device=home)
    adv_inputs = inputs.detach().clone()
    seconds = [0.0] * len(stages)
    for start in range(0, n, batch_size):
        chunk = slice(start, min(start + batch_size, n))
        x = inputs[chunk].detach().to(device)
        y = labels[chunk].to(device)
        robust = _correct(model, x, y)
        clean_correct[chunk] = robust.to(home)
        adv = x.clone()
        for index, stage in enumerate(stages):
            todo = robust.nonzero().squeeze(1)
            if on_stage is not None:
                on_stage(index, stage.name, len(todo))
            if len(todo):
                began = time.perf_counter()
                x_todo, y_todo = x.index_select(0, todo), y.index_select(0, todo)
                attempt = stage.attack(model, x_todo, y_todo).detach()
                if attempt.shape != x_todo.shape:
                    raise ValueError(
                        f"stage {stage.name!r} returned shape {tuple(attempt.shape)} for inputs "
                        f"of shape {tuple(x_todo.shape)}"
                    )
                attempt = attempt.to(device=device, dtype=x.dtype)
                if eps is not None:
                    _check_budget(stage.name, attempt, x_todo, eps, norm)
                fooled = ~_correct(model, attempt, y_todo)
                adv[todo] = attempt
                robust[todo[fooled]] = False
                broken_by[start + todo[fooled].to(home)] = index
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds[index] += time.perf_counter() - began
            robust_masks[index, chunk] = robust.to(home)
        adv_inputs[chunk] = adv.to(home)
    return CascadeResult(names, clean_correct, robust_masks, broken_by, adv_inputs, seconds)


def standard_stages(
    eps: float, norm: str = "linf", steps: int = 100, seed: int = 0, queries: int = 5000
) -> list[AttackStage]:
    """AutoAttack's standard stages with its defaults: APGD-CE (``steps`` iterations, 1 run),
    APGD-T (9 target classes, ``steps`` iterations each) and Square (``queries`` = 5000, p_init
    0.8). Lower ``steps`` and ``queries`` only for quick checks: they weaken the evaluation.
    """
    get_threat(norm)
    stages = [
        AttackStage("apgd-ce", partial(apgd, eps=eps, norm=norm, steps=steps, seed=seed)),
        AttackStage(
            "apgd-t",
            partial(
                apgd_targeted, eps=eps, norm=norm, steps=steps, num_target_classes=9, seed=seed
            ),
        ),
    ]
    stages.append(
        AttackStage("square", partial(square, eps=eps, norm=norm, queries=queries, seed=seed))
    )
    return stages


def _correct(model: nn.Module, inputs: Tensor, labels: Tensor) -> Tensor:
    with attack_mode(model, train=False), torch.no_grad():
        logits = model(inputs)
    check_labels_fit(logits, labels)
    return logits.argmax(dim=1) == labels


def _check_budget(name: str, adv_inputs: Tensor, inputs: Tensor, eps: float, norm: str) -> None:
    largest = get_threat(norm).norm(adv_inputs - inputs).max()
    size, low, high = torch.stack([largest, adv_inputs.min(), adv_inputs.max()]).tolist()  # 1 sync
    if size > eps + 1e-5 or low < 0.0 or high > 1.0:
        raise ValueError(
            f"stage {name!r} left the threat model: {norm} size {size:.6g} for eps {eps:.6g}, "
            f"values in [{low:.6g}, {high:.6g}]; fix the attack or the eps/norm given to cascade"
        )


def _mean(mask: Tensor) -> float:
    return mask.float().mean().item() if mask.numel() else 0.0
