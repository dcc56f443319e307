"""The model registry and the normalizing wrapper every model is built inside.

Models take inputs in [0, 1]; per-channel normalization lives inside the model (its mean and std
are persistent buffers, so they travel with the state dict) so attacks and budgets always work in
pixel space.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from advkit.models.reference import ModelReferenceError, parse_reference
from advkit.models.user_factory import build_user_model
from advkit.registry import Registry

#: ``factory(num_classes: int, in_channels: int, **kwargs) -> nn.Module`` returning logits.
#: Metadata: ``input_size`` (the H = W the model requires, or None for any) and ``description``.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; input (N, C, H, W) with C = len(mean), same shape out."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if not mean or len(mean) != len(std):
            raise ValueError(
                f"mean and std need one value per input channel and the same length, got "
                f"mean={mean} and std={std}"
            )
        if not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
            raise ValueError(f"std must be finite and > 0 for every channel, got std={std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        channels = self.mean.shape[0]
        if x.dim() < 3 or x.shape[-3] != channels:
            raise ValueError(
                f"expected inputs of shape (N, {channels}, H, W) to match the {channels}-channel "
                f"mean/std, got {tuple(x.shape)}; pass mean/std with one value per channel"
            )
        return (x - self.mean.view(-1, 1, 1)) / self.std.view(-1, 1, 1)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class NormalizedModel(nn.Module):
    """``net(normalize(x))`` for inputs x in [0, 1] of shape (N, C, H, W); logits (N, classes)."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))


def create_model(
    name: str,
    /,
    num_classes: int = 10,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
    **kwargs: object,
) -> NormalizedModel:
    """Build the model ``name`` wrapped in its normalization.

    ``name`` is a registered name, ``path/to/file.py:factory`` or ``package.module:factory``
    (:mod:`advkit.models.reference`). ``in_channels`` is ``len(mean)``; ``kwargs`` go to the
    model's factory (e.g. ``depth`` for ``wrn``). Raises ValueError for an unknown name, bad
    mean/std, ``num_classes < 2`` or keyword arguments the model does not take.
    """
    ref = parse_reference(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    normalize = Normalize(mean, std)
    in_channels = normalize.mean.shape[0]
    if not ref.registered:
        return NormalizedModel(build_user_model(ref, num_classes, in_channels, kwargs), mean, std)
    factory = MODELS.get(name)
    signature = inspect.signature(factory).parameters
    params = list(signature)[2:]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
    unknown = [] if takes_any else sorted(set(kwargs) - set(params))
    if unknown:
        hint = "; in_channels is len(mean)" if "in_channels" in unknown else ""
        raise ModelReferenceError(
            f"model {name!r} does not take the options {unknown}; it accepts {params or 'none'}"
            f"{hint}"
        )
    for key, value in kwargs.items():
        _check_type(name, signature.get(key), value)
    return NormalizedModel(factory(num_classes, in_channels, **kwargs), mean, std)


def _check_type(model: str, parameter: inspect.Parameter | None, value: object) -> None:
    """ModelReferenceError (a ValueError) unless ``value`` has the type of ``parameter``'s
    default (when it has one)."""
    default = None if parameter is None else parameter.default
    if default is None or default is inspect.Parameter.empty:
        return
    kind = type(default)
    fits = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind, True)
    if not fits:
        raise ModelReferenceError(
            f"model {model!r} takes {parameter.name} as {kind.__name__} (default {default!r}), "
            f"got {value!r}"
        )


def list_models() -> list[tuple[str, str]]:
    """``(name, description)`` for every registered model, sorted by name."""
    rows = []
    for name in MODELS.names():
        text = MODELS.meta(name).get("description", "")
        options = list(inspect.signature(MODELS.get(name)).parameters.values())[2:]
        if options and "options" not in text:  # the --model-arg names, with their defaults
            text += " (options " + ", ".join(f"{o.name}={o.default!r}" for o in options) + ")"
        rows.append((name, text))
    return rows


def check_input_size(x: Tensor, size: int, name: str) -> None:
    """Raise a ValueError unless ``x`` is (N, C, size, size); a static-shape guard under compile."""
    if x.dim() != 4 or x.shape[-2] != size or x.shape[-1] != size:
        raise ValueError(
            f"{name} expects inputs of shape (N, C, {size}, {size}), got {tuple(x.shape)}; resize "
            f"the images to {size}x{size} or pick a model that takes this size (`advkit models`)"
        )


def init_resnet_weights(module: nn.Module) -> None:
    """He (kaiming normal, fan_out) init for convs, BN weight 1 / bias 0, zero linear biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
