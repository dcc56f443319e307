"""Interval bound propagation training (Gowal et al., "On the Effectiveness of Interval Bound
Propagation for Training Verifiably Robust Models", 2018, arXiv:1810.12715).

Each batch: one clean forward (through the trainer's model, so DDP synchronizes the update) and
interval bounds on the margins ``z_y - z_j`` over the box ``[x - eps, x + eps]`` clipped to [0, 1]
(``advkit.bounds``, elided final layer), then one weight update on

    kappa * CE(z(x), y) + (1 - kappa) * CE(-margin_lower_bounds, y),

the second term the cross-entropy of Gowal et al.'s worst-case logits. Schedules as the paper's:
eps held at 0 for ``--eps-hold-epochs`` passes (its warm-up), then ramped linearly to ``--eps``
over ``--eps-warmup-epochs`` passes (the trainer's eps ramp: ``ctx.eps``), while kappa falls
linearly from 1 to ``--kappa`` (the paper's kappa_final, 0.5) over the same ramp: kappa follows
``ctx.eps / eps``. BatchNorm in training mode: the bounds use the clean batch's statistics,
recorded from the clean forward (the paper's choice), so they bound the function the clean term
trains. Dropout counts as the identity in the bounds. L-inf only.

``--bounds crown-ibp`` (Zhang et al., "Towards Stable and Efficient Training of Verifiably Robust
Neural Networks", ICLR 2020, arXiv:1906.06316) bounds the margins by beta x CROWN-IBP + (1 - beta)
x IBP, beta falling from 1 to 0 over the same ramp: tighter bounds while eps is small, IBP's at
the end.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advkit.bounds import (
    crown_ibp_margin_lower_bounds,
    margin_lower_bounds,
    recording_batch_stats,
)
from advkit.methods.base import METHODS, Method, StepContext, StepOutput


@METHODS.register(
    "ibp",
    description="interval bound propagation: --kappa x clean CE + (1 - kappa) x worst-case CE "
    "(Gowal et al. 2018)",
)
class IBPTraining(Method):
    """IBP training towards eps ``eps`` (pixel units) with final clean weight ``kappa``."""

    norms = ("linf",)

    def __init__(
        self, *, kappa: float = 0.5, eps: float | None = None, bounds: str = "ibp", **base: Any
    ) -> None:
        super().__init__(**base)
        if self.norm != "linf":
            raise ValueError(f"ibp bounds L-inf boxes; train it with --norm linf, not {self.norm}")
        if not 0 <= kappa <= 1:
            raise ValueError(
                f"kappa must be in [0, 1] (the clean loss's final weight), got {kappa}"
            )
        if eps is not None and not eps >= 0:
            raise ValueError(f"eps must be >= 0 (pixel units), got {eps}")
        if bounds not in ("ibp", "crown-ibp"):
            raise ValueError(f"bounds must be ibp or crown-ibp, got {bounds!r}")
        self.kappa = kappa
        self.eps = eps
        self.bounds = bounds

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "kappa": config.kappa, "eps": config.eps, "bounds": config.bounds,
        }  # fmt: skip

    def ramp_done(self, eps: float) -> float:
        """How far the eps ramp is, in [0, 1]: the ramped ``eps`` over the full one."""
        return 1.0 if not self.eps else min(1.0, eps / self.eps)

    def kappa_at(self, eps: float) -> float:
        """kappa at the ramped ``eps``: 1 at eps 0, ``kappa`` at the full eps (linear)."""
        return 1.0 - (1.0 - self.kappa) * self.ramp_done(eps)

    def margins(self, ctx: StepContext, inputs: Tensor, labels: Tensor, stats: Any) -> Tensor:
        """Lower bounds on the margins over the clipped box at ``ctx.eps``: interval bounds, or
        with ``bounds="crown-ibp"`` beta x CROWN-IBP + (1 - beta) x IBP, beta = 1 - ramp_done
        (Zhang et al. 2020's schedule, 1 -> 0)."""
        lower = (inputs - ctx.eps).clamp(0, 1)
        upper = (inputs + ctx.eps).clamp(0, 1)
        model = ctx.attack_model
        margins = margin_lower_bounds(model, lower, upper, labels, batch_stats=stats)
        beta = 1.0 - self.ramp_done(ctx.eps)
        if self.bounds == "crown-ibp" and beta > 0:
            crown = crown_ibp_margin_lower_bounds(model, lower, upper, labels, batch_stats=stats)
            margins = beta * crown + (1.0 - beta) * margins
        return margins

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        kappa = self.kappa_at(ctx.eps)
        with recording_batch_stats(ctx.attack_model) as stats:
            logits = ctx.model(inputs)
        clean_loss = self.criterion(logits, labels)
        if ctx.eps == 0:  # the warm-up: the box is the point, the worst case the clean logits
            ctx.optimize(clean_loss)
            metrics = {"robust_loss": clean_loss, "verified": (logits.argmax(1) == labels).float()}
            return self._output(clean_loss, logits, metrics, kappa)
        # The same parameters as ctx.model's: their gradients from the bounds join the clean
        # term's before DDP's per-parameter hooks fire, so one backward synchronizes both.
        with torch.set_grad_enabled(kappa < 1):  # kappa 1: the bounds only measure
            margins = self.margins(ctx, inputs, labels, stats)
            robust_loss = self.criterion(-margins, labels)
        loss = clean_loss if kappa == 1 else kappa * clean_loss + (1.0 - kappa) * robust_loss
        ctx.optimize(loss)
        verified = ((margins > 0).sum(1) == margins.shape[1] - 1).float()
        return self._output(loss, logits, {"robust_loss": robust_loss, "verified": verified}, kappa)

    @staticmethod
    def _output(loss: Tensor, logits: Tensor, metrics: dict[str, Tensor], kappa: float
                ) -> StepOutput:  # fmt: skip
        """The step's output with the same metrics in warm-up and after (epoch means)."""
        metrics = {name: value.detach().mean() for name, value in metrics.items()}
        metrics["kappa"] = logits.new_tensor(kappa).detach()
        return StepOutput(loss=loss.detach(), logits=logits.detach(), metrics=metrics)
