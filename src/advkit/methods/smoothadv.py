"""SmoothAdv (Salman et al., "Provably Robust Deep Learning via Adversarially Trained Smoothed
Classifiers", NeurIPS 2019, arXiv:1906.04584): adversarial training of the smoothed classifier.

Each batch: ``num_noise`` (m) noise draws per image, N(0, sigma^2 I), drawn once; ``steps`` (T)
steps of PGD of ``step_size`` (default 2 * eps / T) from delta = 0 against the soft smoothed
classifier with those m draws held fixed (:mod:`advkit.attacks.smoothing`), on the unwrapped
model in eval mode (as the paper's code) unless ``attack_train_mode``; then one weight update on
the cross-entropy averaged over all m noisy copies x + delta + n_i of each image (the paper's
``--train-multi-noise``). The paper's code defaults: m = 1, T = 10, eps = 64/256 = 0.25 (L2); its
best CIFAR-10 models use m in {1, 2, 4, 8} and eps up to 2.0. The paper's threat model is L2
(``--norm l2``); with ``--norm linf`` the same attack runs in the L-inf ball.

The eps warm-up is advkit's ramp (``--eps-warmup-epochs``; ``ctx.eps`` is the ramped eps): the
paper's ``--warmup W`` raises eps linearly over W epochs in steps of one epoch ((e + 1) / W * eps
in epoch e; its default W = 1 is no ramp, ``--eps-warmup-epochs 0``), advkit's ramps per batch
from 0 to the same eps at the end of epoch W, so the two differ only within each warm-up epoch.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from advkit.attacks import attack_mode
from advkit.attacks.smoothing import smoothed_pgd_delta
from advkit.methods.base import METHODS, StepContext, StepOutput
from advkit.methods.smoothing import SmoothingMethod, repeat_labels
from advkit.threat import get_threat


@METHODS.register(
    "smoothadv",
    description="SmoothAdv: PGD against the smoothed classifier over --num-noise fixed noise "
    "draws, training on every noisy copy (Salman et al. 2019)",
)
class SmoothAdvTraining(SmoothingMethod):
    """SmoothAdv-PGD with m noise draws, T attack steps, trained on all m noisy copies."""

    name = "smoothadv"
    adversarial = True

    def __init__(
        self,
        *,
        steps: int = 10,
        step_size: float | None = None,
        attack_train_mode: bool = False,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if steps < 1:
            raise ValueError(f"smoothadv needs steps (T) >= 1, got {steps}")
        if step_size is not None and step_size <= 0:
            raise ValueError(
                f"step_size must be > 0 (pixel units), or None for 2 * eps / steps; got {step_size}"
            )
        self.steps = steps
        self.step_size = step_size
        self.attack_train_mode = attack_train_mode

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "steps": config.steps,
            "step_size": config.step_size,
            "attack_train_mode": config.attack_train_mode,
        }

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        noise_vectors = self.draw_noise(inputs, ctx)
        step_size = 2 * ctx.eps / self.steps if self.step_size is None else self.step_size
        step_size *= self.step_scale
        with attack_mode(ctx.attack_model, train=self.attack_train_mode):
            delta = smoothed_pgd_delta(
                ctx.attack_model, inputs, labels, noise_vectors, threat=get_threat(self.norm),
                eps=ctx.eps, steps=self.steps, step_size=step_size, clip=self.noise_clip,
            )  # fmt: skip
        logits = ctx.model(self.noisy(inputs + delta, noise_vectors))
        loss = self.criterion(logits, repeat_labels(labels, self.num_noise))
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=self.smoothed(logits))
