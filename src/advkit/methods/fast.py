"""Fast adversarial training: FGSM with a random start (Wong, Rice & Kolter, "Fast is better than
free: Revisiting adversarial training", ICLR 2020, arXiv:2001.03994).

Each batch: one input-gradient step of ``step_size`` (default 1.25 * eps, the paper's alpha) from
a start ``delta`` drawn by ``init``, projected to the eps-ball and to [0, 1], then one weight
update on the perturbed batch. The paper's inits: "zero", "random" (uniform in the eps-ball, the
one that works) and "previous" (the last batch's perturbation, as in Free-AT). "random" clips the
start to [0, 1] before the gradient is taken; "ball" does not (the gradient is taken at a point
that may lie outside the image box, and only the perturbation after the step is clipped), which
is what the authors' MNIST code does: on MNIST, whose background pixels sit at 0, a clipped start
gives those pixels only non-negative noise. The attack runs on the unwrapped model in eval mode
unless ``attack_train_mode`` (the paper's code used train mode). ``clean_weight`` lambda > 0
adds lambda * l(x) to the loss, as DAT-FGSM does (Zhang et al., UAI 2022).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advkit.attacks import attack_mode, pgd_delta
from advkit.attacks.losses import cross_entropy
from advkit.methods.base import METHODS, Method, StepContext, StepOutput
from advkit.methods.free import PersistentDelta
from advkit.threat import get_threat

INITS = ("zero", "random", "ball", "previous")


@METHODS.register(
    "fast",
    description="FGSM adversarial training from a random start (Wong, Rice & Kolter 2020)",
)
class FastTraining(Method):
    """FGSM adversarial training from an ``init`` start, ``step_size`` 1.25 * eps by default."""

    def __init__(
        self,
        *,
        init: str = "random",
        step_size: float | None = None,
        attack_train_mode: bool = False,
        clean_weight: float = 0.0,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if init not in INITS:
            raise ValueError(f"fast training init must be one of {', '.join(INITS)}; got {init!r}")
        if step_size is not None and step_size <= 0:
            raise ValueError(
                f"step_size must be > 0 (pixel units), or None for 1.25 * eps; got {step_size}"
            )
        self.init = init
        self.step_size = step_size
        self.attack_train_mode = attack_train_mode
        if not clean_weight >= 0:
            raise ValueError(f"clean_weight must be >= 0, got {clean_weight}")
        self.clean_weight = clean_weight
        self._previous = PersistentDelta()

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "init": config.init,
            "step_size": config.step_size,
            "attack_train_mode": config.attack_train_mode,
            "clean_weight": config.clean_weight,
        }

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        threat = get_threat(self.norm)
        step_size = 1.25 * ctx.eps if self.step_size is None else self.step_size
        step_size *= self.step_scale  # shrunk by the catastrophic-overfitting guard
        if self.init == "random":
            start = threat.random_init(inputs, ctx.eps, ctx.noise)
        elif self.init == "previous":
            start = threat.project(self._previous.read(inputs), inputs, ctx.eps)
        elif self.init == "ball":
            start = threat.sample_ball(inputs, ctx.eps, ctx.noise)
        else:
            start = torch.zeros_like(inputs)
        with attack_mode(ctx.attack_model, train=self.attack_train_mode):
            delta = pgd_delta(
                ctx.attack_model, inputs, labels, start, threat=threat, eps=ctx.eps,
                steps=1, step_size=step_size, loss_fn=cross_entropy,
            )  # fmt: skip
        if self.init == "previous":
            self._previous.write(delta)
        loss, logits, metrics = self.adversarial_loss(
            ctx.model, inputs, inputs + delta, labels, self.clean_weight
        )
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=logits.detach(), metrics=metrics)

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | self._previous.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._previous.load_state_dict(state)
