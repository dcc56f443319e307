"""What the training methods for randomized smoothing share: the noise, its options and checks.

Each method trains the base classifier f of a smoothed classifier g(x) = argmax_c P(f(x + n) = c),
n ~ N(0, sigma^2 I) (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918) on m noisy copies of
each image. The noise is drawn through ``ctx.noise`` in one draw of shape (N, m, ...), so a sample
gets the same noise on whichever worker holds it and a resumed run draws what an uninterrupted
one does; it is added in [0, 1] pixel space in front of the model's normalization (``sigma`` in
pixel units, like eps), unclipped unless ``noise_clip`` (the reference code does not clip).

``adversarial`` is False unless the method attacks (SmoothAdv): the per-epoch validation still
measures clean and PGD accuracy of the base classifier at the run's eps, and a method without an
attack selects its best epoch by clean validation accuracy, as natural training does.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from advkit.attacks.smoothing import check_sigma, gaussian_noise, noisy_copies, smoothed_log_probs
from advkit.methods.base import Method, StepContext

#: Config options only these methods take, with their unset values (refused elsewhere).
SMOOTHING_OPTIONS = {"sigma": None, "noise_clip": False, "num_noise": None}


class SmoothingMethod(Method):
    """A method that trains on ``num_noise`` (m) Gaussian copies of each image, std ``sigma``."""

    adversarial = False
    input_noise = True
    #: the method's registered name, for messages.
    name = "smoothing"
    #: the fewest noise copies the method's loss means something with.
    min_num_noise = 1

    def __init__(
        self, *, sigma: float = 0.25, noise_clip: bool = False, num_noise: int = 1, **base: Any
    ) -> None:
        super().__init__(**base)
        check_sigma(sigma)
        if num_noise < self.min_num_noise:
            raise ValueError(
                f"{self.name} needs num_noise (--num-noise, m noise copies per image) >= "
                f"{self.min_num_noise}, got {num_noise}"
            )
        self.sigma = sigma
        self.noise_clip = noise_clip
        self.num_noise = num_noise

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "sigma": config.sigma,
            "noise_clip": config.noise_clip,
            "num_noise": config.num_noise,
        }

    def draw_noise(self, inputs: Tensor, ctx: StepContext) -> Tensor:
        """This step's noise, (N, m, ...) in pixel units, drawn once through ``ctx.noise``."""
        return gaussian_noise(inputs, self.sigma, self.num_noise, ctx.noise)

    def noisy(self, inputs: Tensor, noise_vectors: Tensor) -> Tensor:
        """The (N * m, ...) noisy copies, sample-major, clipped to [0, 1] if ``noise_clip``."""
        return noisy_copies(inputs, noise_vectors, self.noise_clip)

    def smoothed(self, logits: Tensor) -> Tensor:
        """(N, C) log-probabilities of the m-sample soft smoothed classifier from (N * m, C)
        logits: the step's reported logits (their argmax is its prediction)."""
        return smoothed_log_probs(logits.detach(), self.num_noise)


def repeat_labels(labels: Tensor, num_noise: int) -> Tensor:
    """Labels for :func:`noisy_copies`'s sample-major batch: each repeated m times in place."""
    return labels.repeat_interleave(num_noise)
