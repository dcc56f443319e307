"""Threat models: the set of allowed perturbations and the three operations attacks need.

Everything is in pixel units on inputs in [0, 1]: ``eps`` is the radius of the ball in the
pixel space (write 8/255, never divide by the normalization std). Each operation keeps
``inputs + delta`` inside [0, 1], so an attack that only calls these can never leave the budget.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from advkit.errors import BudgetError, InputError
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

    @abstractmethod
    def diameter(self, input_shape: Sequence[int] | None) -> float | None:
        """The largest distance in this norm between two inputs of ``input_shape`` (C, H, W) in
        [0, 1]: a larger radius holds every input. None when it depends on an unknown shape."""

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

    def diameter(self, input_shape: Sequence[int] | None) -> float | None:
        return 1.0


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

    def diameter(self, input_shape: Sequence[int] | None) -> float | None:
        return None if input_shape is None else math.sqrt(math.prod(input_shape))


def _as_batch(value: Tensor | float, like: Tensor) -> Tensor | float:
    """Scalars pass through; a per-sample tensor (N,) is reshaped to broadcast over ``like``."""
    if isinstance(value, Tensor) and value.dim() == 1:
        return _per_sample(value.to(like.dtype), like)
    return value


def get_threat(norm: str) -> ThreatModel:
    """The threat model named ``norm`` ("linf" or "l2")."""
    return THREATS.get(norm)()


def check_budget(
    eps: Tensor | float,
    norm: str,
    input_shape: Sequence[int] | None = None,
    *,
    name: str = "eps",
    allow_zero: bool = True,
) -> None:
    """Refuse a radius (or step size) that no ``norm`` threat model on [0, 1] inputs means.

    The one check behind the training config, ``advkit eval --eps/--sweep`` and the attacks'
    public entry points. Refused: booleans, non-numbers, values too large for a float, nan and
    inf, negatives (and 0 unless ``allow_zero``), and values above the diameter of the [0, 1] box
    in this norm (1 for L-inf; sqrt(C*H*W) for L2, checked only when ``input_shape`` is known),
    which usually means a budget in 0..255 units: the message suggests ``8/255``. ``eps`` may be a
    per-sample tensor (one reduction). ``name`` is how the message names the value ("--eps").
    Raises :class:`advkit.errors.BudgetError` (a ValueError).
    """
    threat = get_threat(norm)
    if isinstance(eps, Tensor):
        if eps.numel() == 0:
            return
        low, high = torch.stack(torch.aminmax(eps.detach().double())).tolist()
    else:
        if isinstance(eps, bool):
            raise BudgetError(f"{name} must be a number in pixel units (e.g. 8/255), got {eps!r}")
        try:
            low = high = float(eps)
        except OverflowError:
            raise BudgetError(
                f"{name} {str(eps)[:12]}... is too large for any budget; write it in [0,1] pixel "
                "units, e.g. 8/255"
            ) from None
        except (TypeError, ValueError):
            raise BudgetError(
                f"{name} must be a number in pixel units (e.g. 8/255), got {eps!r}"
            ) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise BudgetError(f"{name} must be a finite number in pixel units (e.g. 8/255), got {eps}")
    if low < 0 or (low == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise BudgetError(f"{name} must be {bound} (pixel units, e.g. 8/255), got {low:g}")
    diameter = threat.diameter(None if input_shape is None else tuple(input_shape))
    if diameter is not None and high > diameter:
        what = "step" if "step" in name else "radius"
        hint = (
            f"did you mean {high:g}/255?" if high <= 255 else "write it in [0,1] units, e.g. 8/255"
        )
        if threat.name == "linf":
            reason = "larger than the whole pixel range"
        else:
            shape = "x".join(str(size) for size in input_shape or ())
            reason = (
                f"larger than {diameter:.4g}, the diameter of the [0,1] box of {shape} inputs "
                "(the ball would hold every input)"
            )
        raise BudgetError(
            f"{name} {high:g} is an {_NORM_NAMES.get(threat.name, threat.name)} {what} of "
            f"{high:g} in [0,1] pixel units, {reason}; {hint}"
        )


_NORM_NAMES = {"linf": "L-inf", "l2": "L2"}


def check_unit_range(inputs: Tensor, what: str = "inputs") -> None:
    """Refuse inputs that are not floats in [0, 1] (one reduction, one host sync).

    Attacks and evaluation work in [0, 1] pixel units with the normalization inside the model; an
    input in 0..255, or already normalized, would make every budget meaningless.
    Raises :class:`advkit.errors.InputError` (a ValueError).
    """
    if not inputs.is_floating_point():
        raise InputError(
            f"{what} must be float images in [0, 1], got dtype {inputs.dtype}; convert uint8 "
            "images with images.float() / 255"
        )
    if inputs.numel() == 0:
        return
    low, high = torch.stack(torch.aminmax(inputs.detach())).tolist()
    if low >= 0.0 and high <= 1.0:
        return
    if math.isnan(low) or math.isnan(high):
        hint = "they hold NaN"
    elif high > 1.0:
        hint = "pixel values in 0..255? divide them by 255"
    else:
        hint = "normalized already? pass raw [0, 1] pixels: the normalization belongs in the model"
    raise InputError(f"{what} must be in [0, 1], got values in [{low:.3g}, {high:.3g}]: {hint}")
