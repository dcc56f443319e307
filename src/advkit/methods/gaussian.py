"""Gaussian data augmentation for randomized smoothing (Cohen, Rosenfeld & Kolter, "Certified
Adversarial Robustness via Randomized Smoothing", ICML 2019, arXiv:1902.02918).

Each batch: the cross-entropy of the base classifier on the images plus N(0, sigma^2 I) noise,
one weight update. The paper draws one noise per image (``num_noise`` m = 1); m > 1 trains on
all m noisy copies, the loss averaged over them. No attack: ``eps`` only sets the validation's
PGD (see ``advkit.methods.smoothing``). ``sigma`` in [0, 1] pixel units; the noisy images are not
clipped to [0, 1] unless ``noise_clip``, as in the paper's code.
"""

from __future__ import annotations

from torch import Tensor

from advkit.methods.base import METHODS, StepContext, StepOutput
from advkit.methods.smoothing import SmoothingMethod, repeat_labels


@METHODS.register(
    "gaussian",
    description="Gaussian noise augmentation at --sigma, for randomized smoothing "
    "(Cohen, Rosenfeld & Kolter 2019)",
)
class GaussianTraining(SmoothingMethod):
    """Cross-entropy on ``num_noise`` noisy copies of each image, noise std ``sigma``."""

    name = "gaussian"

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        noisy = self.noisy(inputs, self.draw_noise(inputs, ctx))
        logits = ctx.model(noisy)
        loss = self.criterion(logits, repeat_labels(labels, self.num_noise))
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=self.smoothed(logits))
