"""TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy",
ICML 2019, arXiv:1901.08573).

Each batch: maximize KL(p(x) || p(x + delta)) with ``steps`` steps of ``step_size`` from the paper's
small random start 0.001 * N(0, I), on the unwrapped model in eval mode (as the paper's code), then
one weight update on CE(f(x), y) + beta * KL(p(x) || p(x + delta)) (batch mean) in train mode.
``step_size`` defaults to 2.5 * eps / steps, as for PGD: eps / 4 at the paper's 10 steps (the
paper's CIFAR-10 value is 0.007 for eps = 0.031). Pixel units, inputs in [0, 1].

The clean and adversarial batches go through the model in two passes, as in the paper: one
concatenated pass would be a little cheaper but would give BatchNorm statistics of the mixture,
a different training objective.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advkit.attacks import attack_mode, pgd_delta
from advkit.attacks.losses import kl_to_clean
from advkit.methods.base import METHODS, Method, StepContext, StepOutput
from advkit.threat import get_threat


@METHODS.register(
    "trades",
    description="TRADES: clean loss + --beta x KL(clean || adversarial) (Zhang et al. 2019)",
)
class TRADESTraining(Method):
    """TRADES with trade-off ``beta`` (the paper's 1/lambda; 6.0 in its CIFAR-10 experiments)."""

    def __init__(
        self,
        *,
        beta: float = 6.0,
        steps: int = 10,
        step_size: float | None = None,
        attack_train_mode: bool = False,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if beta < 0:
            raise ValueError(f"trades needs beta >= 0, got {beta}")
        if steps < 1:
            raise ValueError(f"trades needs steps >= 1, got {steps}")
        if step_size is not None and step_size <= 0:
            raise ValueError(
                f"step_size must be > 0 (pixel units), or None for 2.5 * eps / steps; "
                f"got {step_size}"
            )
        self.beta = beta
        self.steps = steps
        self.step_size = step_size
        self.attack_train_mode = attack_train_mode

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "beta": config.beta,
            "steps": config.steps,
            "step_size": config.step_size,
            "attack_train_mode": config.attack_train_mode,
        }

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        if self.beta == 0:  # the KL term has no weight: natural training, no attack to pay for
            logits = ctx.model(inputs)
            loss = self.criterion(logits, labels)
            ctx.optimize(loss)
            return StepOutput(loss=loss.detach(), logits=logits.detach())
        delta = self._attack(inputs, ctx)  # first, so its memory is free before the graphs below
        logits = ctx.model(inputs)
        adv_logits = ctx.model(inputs + delta)
        # p(x) keeps its gradient in the KL term, as in the paper's code.
        kl = kl_to_clean(adv_logits, F.log_softmax(logits.float(), dim=1)).mean()
        loss = self.criterion(logits, labels) + self.beta * kl
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=logits.detach(), metrics={"kl": kl.detach()})

    def _attack(self, inputs: Tensor, ctx: StepContext) -> Tensor:
        threat = get_threat(self.norm)
        step_size = 2.5 * ctx.eps / self.steps if self.step_size is None else self.step_size
        step_size *= self.step_scale
        start = threat.project(0.001 * ctx.noise.normal_like(inputs), inputs, ctx.eps)
        with attack_mode(ctx.attack_model, train=self.attack_train_mode):
            with torch.no_grad():  # p(x) is the fixed target of the inner maximization
                clean_log_probs = F.log_softmax(ctx.attack_model(inputs).float(), dim=1)
            # pgd_delta calls loss_fn(logits, labels): the "labels" here are the clean log-probs.
            return pgd_delta(
                ctx.attack_model, inputs, clean_log_probs, start, threat=threat, eps=ctx.eps,
                steps=self.steps, step_size=step_size, loss_fn=kl_to_clean,
            )  # fmt: skip
