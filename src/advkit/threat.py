"""Threat models: the set of allowed perturbations and the three operations attacks need.

Everything is in pixel units on inputs in [0, 1]: ``eps`` is the radius of the ball in the
pixel space (write 8/255, never divide by the normalization std). Each operation keeps
``inputs + delta`` inside [0, 1], so an attack that only calls these can never leave the budget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from advkit.noise import GLOBAL_NOISE, Noise
from advkit.registry import Registry

THREATS: Registry[type[ThreatModel]] = Registry("norm")


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector (N,) so it broadcasts against a batch shaped like ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class ThreatModel(ABC):
    """An Lp ball of radius eps intersected with the [0, 1] box."""

    name: str

    @abstractmethod
    def norm(self, delta: Tensor) -> Tensor:
        """Per-sample norm of a perturbation batch, shape (N,)."""

    @abstractmethod
    def sample_ball(
        self, inputs: Tensor, eps: Tensor | float, noise: Noise = GLOBAL_NOISE
    ) -> Tensor:
        """A perturbation drawn uniformly from the eps-ball, shaped like ``inputs``; not clipped to
        the [0, 1] box. ``noise`` supplies the random draws (torch's global RNG by default)."""

    @abstractmethod
    def ascent(self, delta: Tensor, grad: Tensor, step_size: Tensor | float) -> Tensor:
        """One steepest-ascent step on the loss for this norm (not yet projected)."""

    @abstractmethod
    def project_ball(self, delta: Tensor, eps: Tensor | float) -> Tensor:
        """Project onto the eps-ball, ignoring the box."""

    def random_init(
        self, inputs: Tensor, eps: Tensor | float, noise: Noise = GLOBAL_NOISE
    ) -> Tensor:
        """A random perturbation inside the ball and the box: ``sample_ball`` clipped so that
        ``inputs + delta`` lies in [0, 1]."""
        return (inputs + self.sample_ball(inputs, eps, noise)).clamp_(0.0, 1.0).sub_(inputs)

    def project(self, delta: Tensor, inputs: Tensor, eps: Tensor | float) -> Tensor:
        """Project onto the ball, then clip so that ``inputs + delta`` lies in [0, 1].

        For L-inf both sets are boxes and the composition is the exact projection; for L2 the box
        clip can only shrink the norm, so the result stays feasible.
        """
        delta = self.project_ball(delta, eps)
        return (inputs + delta).clamp_(0.0, 1.0).sub_(inputs)


@THREATS.register("linf")
class LinfThreat(ThreatModel):
    name = "linf"

    def norm(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).abs().amax(dim=1)

    def sample_ball(
        self, inputs: Tensor, eps: Tensor | float, noise: Noise = GLOBAL_NOISE
    ) -> Tensor:
        return (noise.uniform_like(inputs) * 2 - 1) * _as_batch(eps, inputs)

    def ascent(self, delta: Tensor, grad: Tensor, step_size: Tensor | float) -> Tensor:
        return delta + _as_batch(step_size, delta) * grad.sign()

    def project_ball(self, delta: Tensor, eps: Tensor | float) -> Tensor:
        eps = _as_batch(eps, delta)
        if isinstance(eps, Tensor):
            return torch.maximum(torch.minimum(delta, eps), -eps)
        return delta.clamp(-eps, eps)


@THREATS.register("l2")
class L2Threat(ThreatModel):
    name = "l2"

    def norm(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).norm(p=2, dim=1)

    def sample_ball(
        self, inputs: Tensor, eps: Tensor | float, noise: Noise = GLOBAL_NOISE
    ) -> Tensor:
        # Uniform in the ball: a Gaussian direction, radius eps * U^(1/d).
        direction = noise.normal_like(inputs)
        direction = direction / _per_sample(self.norm(direction).clamp_min(1e-12), inputs)
        dim = inputs[0].numel()
        radius = noise.uniform(inputs.shape[:1], device=inputs.device, dtype=inputs.dtype)
        radius = radius ** (1 / dim)
        return direction * _per_sample(radius, inputs) * _as_batch(eps, inputs)

    def ascent(self, delta: Tensor, grad: Tensor, step_size: Tensor | float) -> Tensor:
        grad_norm = _per_sample(self.norm(grad).clamp_min(1e-12), grad)
        return delta + _as_batch(step_size, delta) * grad / grad_norm

    def project_ball(self, delta: Tensor, eps: Tensor | float) -> Tensor:
        eps = _as_batch(eps, delta)
        norms = _per_sample(self.norm(delta).clamp_min(1e-12), delta)
        return delta * torch.clamp(eps / norms, max=1.0)


def _as_batch(value: Tensor | float, like: Tensor) -> Tensor | float:
    """Scalars pass through; a per-sample tensor (N,) is reshaped to broadcast over ``like``."""
    if isinstance(value, Tensor) and value.dim() == 1:
        return _per_sample(value.to(like.dtype), like)
    return value


def get_threat(norm: str) -> ThreatModel:
    """The threat model named ``norm`` ("linf" or "l2")."""
    return THREATS.get(norm)()
