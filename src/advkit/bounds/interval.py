"""Interval arithmetic for the layers of small certified networks (Gowal et al., "On the
Effectiveness of Interval Bound Propagation for Training Verifiably Robust Models", 2018,
arXiv:1810.12715).

An :class:`Interval` holds elementwise ``lower <= upper`` tensors. Affine layers (Linear, Conv2d,
BatchNorm with fixed statistics) map it in center/radius form, ``mu' = W mu + b``,
``r' = |W| r``, which is the exact interval image of an affine map; monotone non-decreasing
layers (ReLU and the other activations here, max and average pooling, the normalization layer)
map each bound by themselves; reshapes move both bounds alike. Each rule is exact for its layer
alone; composing them gives sound, looser bounds for the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.models.base import Normalize


@dataclass(frozen=True)
class Interval:
    """Elementwise bounds ``lower <= x <= upper`` of one tensor (same shapes)."""

    lower: Tensor
    upper: Tensor

    @property
    def center(self) -> Tensor:
        return (self.upper + self.lower) / 2

    @property
    def radius(self) -> Tensor:
        return (self.upper - self.lower) / 2

    @classmethod
    def from_center(cls, center: Tensor, radius: Tensor) -> Interval:
        return cls(center - radius, center + radius)

    def map(self, fn: Callable[[Tensor], Tensor]) -> Interval:
        """Both bounds through ``fn``: right for monotone non-decreasing maps and reshapes."""
        return Interval(fn(self.lower), fn(self.upper))

    def affine(self, linear: Callable[[Tensor], Tensor], abs_linear: Callable[[Tensor], Tensor],
               bias: Callable[[Tensor], Tensor] | None = None) -> Interval:  # fmt: skip
        """The image under ``x -> linear(x) (+ bias)``, ``abs_linear`` the map with |W|."""
        center = linear(self.center)
        if bias is not None:
            center = bias(center)
        return Interval.from_center(center, abs_linear(self.radius))

    def scale(self, factor: Tensor | float) -> Interval:
        """The image under elementwise multiplication by a constant of any sign."""
        a, b = self.lower * factor, self.upper * factor
        return Interval(torch.minimum(a, b), torch.maximum(a, b))

    def __add__(self, other: Interval | Tensor | float) -> Interval:
        if isinstance(other, Interval):
            return Interval(self.lower + other.lower, self.upper + other.upper)
        return Interval(self.lower + other, self.upper + other)

    __radd__ = __add__

    def __neg__(self) -> Interval:
        return Interval(-self.upper, -self.lower)

    def __sub__(self, other: Interval | Tensor | float) -> Interval:
        return self + (-other)

    def __rsub__(self, other: Tensor | float) -> Interval:
        return -self + other


def linear_interval(box: Interval, weight: Tensor, bias: Tensor | None) -> Interval:
    """``x @ W.T + b`` over the box, exact (center/radius form)."""
    center = F.linear(box.center, weight, bias)
    return Interval.from_center(center, F.linear(box.radius, weight.abs()))


def conv_interval(box: Interval, conv: nn.Conv2d) -> Interval:
    """A Conv2d over the box, exact for the layer (any padding mode: padding copies values)."""
    center = conv._conv_forward(box.center, conv.weight, conv.bias)
    return Interval.from_center(center, conv._conv_forward(box.radius, conv.weight.abs(), None))


def batch_norm_interval(
    box: Interval, bn: nn.modules.batchnorm._BatchNorm, stats: tuple[Tensor, Tensor] | None
) -> Interval:
    """BatchNorm as the per-channel affine map of its statistics: the running ones in eval mode,
    ``stats`` = (mean, biased variance) of the clean batch in train mode (Gowal et al.'s choice:
    the bounds use the statistics of the nominal pass)."""
    if stats is not None:
        mean, var = stats
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    shape = (-1,) + (1,) * (box.lower.dim() - 2)  # channels on dim 1
    scale, shift = scale.view(shape), shift.view(shape)
    return Interval.from_center(box.center * scale + shift, box.radius * scale.abs())


def batch_stats(inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel (mean, biased variance) of a batch, as BatchNorm normalizes with in training."""
    dims = [0, *range(2, inputs.dim())]
    return inputs.mean(dims), inputs.var(dims, unbiased=False)


#: Modules that map each bound by themselves: monotone non-decreasing or pure reshapes. Dropout
#: is the identity of the deterministic (eval-mode) network the bounds are for.
MONOTONE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Unflatten, nn.Identity,
    nn.Dropout, Normalize,
)  # fmt: skip


def module_interval(
    module: nn.Module, box: Interval, stats: tuple[Tensor, Tensor] | None = None
) -> Interval | None:
    """The interval image of ``box`` under ``module``, or None when no rule here covers it."""
    if isinstance(module, nn.Linear):
        return linear_interval(box, module.weight, module.bias)
    if isinstance(module, nn.Conv2d):
        return conv_interval(box, module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return batch_norm_interval(box, module, stats)
    if isinstance(module, nn.Dropout):
        return box
    if isinstance(module, nn.LeakyReLU) and module.negative_slope < 0:
        return None
    if isinstance(module, nn.ELU) and module.alpha < 0:  # not monotone
        return None
    pools = (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)
    if isinstance(module, pools) and module.return_indices:
        return None
    if isinstance(module, MONOTONE_MODULES):
        return box.map(module)
    return None


#: Names the one-line refusal lists.
SUPPORTED_LAYERS = (
    "Linear, Conv2d, BatchNorm1d/2d (eval mode, or train mode with the clean batch's "
    "statistics), ReLU, ReLU6, LeakyReLU, ELU, Sigmoid, Tanh, Softplus, Hardtanh, max/average "
    "pooling, Flatten, Unflatten, Identity, Dropout, advkit's Normalize; functions: +, -, "
    "scaling by a constant, relu, sigmoid, tanh, flatten, view, reshape, cat, pooling"
)
