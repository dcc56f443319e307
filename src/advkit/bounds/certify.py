"""Verified accuracy under an L-inf budget by interval bound propagation.

An input is verified when the lower bound of every margin ``z_y - z_j`` (j != y) over the box
``[x - eps, x + eps]`` clipped to [0, 1] is > 0: no valid image in the budget changes the class.
Interval bounds are sound but loose, so verified accuracy is a lower bound on the true robust
accuracy, as an attack's robust accuracy is an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advkit.attacks import attack_mode
from advkit.bounds.crown import crown_ibp_margin_lower_bounds
from advkit.bounds.graph import margin_lower_bounds, true_class_mask
from advkit.errors import InputError
from advkit.threat import check_budget, check_unit_range

#: What certify_intervals bounds with: interval bounds, or the better of them and CROWN-IBP's.
BOUNDS = ("ibp", "crown-ibp")


@dataclass
class IntervalCertificate:
    """Per-sample results of :func:`certify_intervals` (boolean tensors of length n, on the CPU)
    and the worst margin's lower bound per sample (> 0 iff verified)."""

    eps: float
    verified: Tensor
    correct: Tensor
    worst_margin: Tensor
    norm: str = "linf"
    bounds: str = "ibp"

    @property
    def n(self) -> int:
        return len(self.verified)

    @property
    def verified_accuracy(self) -> float:
        return float(self.verified.float().mean()) if self.n else 0.0

    @property
    def clean_accuracy(self) -> float:
        return float(self.correct.float().mean()) if self.n else 0.0

    def interval(self, which: str = "verified", confidence: float = 0.95) -> tuple[float, float]:
        """The Wilson interval of the ``verified`` or ``clean`` accuracy."""
        # Here, not at the top: the evaluation package imports the trainer, which imports the
        # methods, one of which (ibp) imports this package.
        from advkit.evaluation.intervals import wilson_interval

        hits = self.verified if which == "verified" else self.correct
        return wilson_interval(int(hits.sum()), self.n, confidence)

    def to_dict(self) -> dict[str, Any]:
        """The counts, accuracies and their 95% Wilson intervals (JSON-ready)."""
        return {
            "bounds": self.bounds,
            "norm": self.norm,
            "eps": self.eps,
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "verified_accuracy": self.verified_accuracy,
            "verified": int(self.verified.sum()),
            "correct": int(self.correct.sum()),
            "intervals": {
                "clean": list(self.interval("clean")),
                "verified": list(self.interval("verified")),
                "confidence": 0.95,
                "method": "wilson",
            },
        }

    def markdown(self) -> str:
        """A one-row table: clean and verified accuracy with their 95% intervals."""
        clean, verified = self.interval("clean"), self.interval("verified")
        return "\n".join([
            f"Verified accuracy by interval bound propagation, L-inf eps = {self.eps:g} "
            f"({self.n} examples; 95% Wilson intervals)",
            "",
            "| bounds | eps | clean | verified |",
            "|---|---|---|---|",
            f"| {self.bounds} | {self.eps:g} | {100 * self.clean_accuracy:.2f}% "
            f"[{100 * clean[0]:.1f}, {100 * clean[1]:.1f}] | {100 * self.verified_accuracy:.2f}% "
            f"[{100 * verified[0]:.1f}, {100 * verified[1]:.1f}] |",
        ])  # fmt: skip


def certify_intervals(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    eps: float,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    bounds: str = "ibp",
) -> IntervalCertificate:
    """Verified accuracy of ``model`` (inputs in [0, 1], (N, C, H, W) -> logits) at L-inf
    ``eps`` (pixel units) by interval bound propagation with elided margins (Gowal et al. 2018,
    arXiv:1810.12715). The model runs in eval mode (restored after); ``device`` defaults to the
    model's. ``bounds="crown-ibp"`` takes, per margin, the larger of the interval and the
    CROWN-IBP lower bound (both sound; Zhang et al. 2020, arXiv:1906.06316). Raises BudgetError
    for eps outside [0, 1], InputError for bad inputs, labels or bounds, UnsupportedLayerError
    for a layer the bounds have no rule for."""
    if bounds not in BOUNDS:
        raise InputError(f"bounds must be one of {', '.join(BOUNDS)}; got {bounds!r}")
    check_budget(eps, "linf", name="eps")
    check_unit_range(inputs)
    if labels.dim() != 1 or len(labels) != len(inputs) or labels.is_floating_point():
        raise InputError(
            f"labels must be integer class indices, one per input: got shape "
            f"{tuple(labels.shape)} for {len(inputs)} inputs"
        )
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    verified, correct, worst = [], [], []
    with attack_mode(model, train=False), torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            is_correct = model(x).argmax(1) == y
            lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
            margins = margin_lower_bounds(model, lower, upper, y)
            if bounds == "crown-ibp":
                crown = crown_ibp_margin_lower_bounds(model, lower, upper, y)
                margins = torch.maximum(margins, crown)
            others = margins.masked_fill(true_class_mask(y, margins.shape[1]), float("inf"))
            worst_margin = others.min(dim=1).values
            # A verified input is classified right at its own point; rounding cannot say else.
            verified.append(((worst_margin > 0) & is_correct).cpu())
            correct.append(is_correct.cpu())
            worst.append(worst_margin.float().cpu())
    empty = torch.zeros(0, dtype=torch.bool)
    return IntervalCertificate(
        eps=float(eps),
        bounds=bounds,
        verified=torch.cat(verified) if verified else empty,
        correct=torch.cat(correct) if correct else empty,
        worst_margin=torch.cat(worst) if worst else torch.zeros(0),
    )
