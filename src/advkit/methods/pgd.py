"""PGD adversarial training (Madry et al., ICLR 2018, arXiv:1706.06083).

Each batch: K steps of PGD of size ``step_size`` from a random start in the eps-ball, then one
weight update on the adversarial batch. The attack runs on the unwrapped model in eval mode
(BatchNorm running statistics, not the batch's) unless ``attack_train_mode`` is set. With
``clean_weight`` lambda > 0 the loss is DAT's, lambda * l(x) + l(x + delta) (Zhang et al., UAI
2022, arXiv:2206.06257), in one backward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advkit.attacks import attack_mode, pgd_delta
from advkit.attacks.losses import cross_entropy
from advkit.methods.base import METHODS, Method, StepContext, StepOutput
from advkit.threat import get_threat


@METHODS.register(
    "pgd",
    description="PGD adversarial training, --steps attack steps per batch (Madry et al. 2018)",
)
class PGDTraining(Method):
    """K-step PGD adversarial training; ``step_size`` defaults to 2.5 * eps / steps."""

    def __init__(
        self,
        *,
        steps: int = 7,
        step_size: float | None = None,
        random_start: bool = True,
        attack_train_mode: bool = False,
        clean_weight: float = 0.0,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if steps < 1:
            raise ValueError(f"pgd training needs steps >= 1, got {steps}")
        self.steps = steps
        self.step_size = step_size
        self.random_start = random_start
        self.attack_train_mode = attack_train_mode
        if not clean_weight >= 0:
            raise ValueError(f"clean_weight must be >= 0, got {clean_weight}")
        self.clean_weight = clean_weight

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "steps": config.steps,
            "step_size": config.step_size,
            "attack_train_mode": config.attack_train_mode,
            "clean_weight": config.clean_weight,
        }

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        threat = get_threat(self.norm)
        step_size = 2.5 * ctx.eps / self.steps if self.step_size is None else self.step_size
        step_size *= self.step_scale
        start = (
            threat.random_init(inputs, ctx.eps, ctx.noise)
            if self.random_start
            else torch.zeros_like(inputs)
        )
        with attack_mode(ctx.attack_model, train=self.attack_train_mode):
            delta = pgd_delta(
                ctx.attack_model, inputs, labels, start, threat=threat, eps=ctx.eps,
                steps=self.steps, step_size=step_size, loss_fn=cross_entropy,
            )  # fmt: skip
        loss, logits, metrics = self.adversarial_loss(
            ctx.model, inputs, inputs + delta, labels, self.clean_weight
        )
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=logits.detach(), metrics=metrics)
