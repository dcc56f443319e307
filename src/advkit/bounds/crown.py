"""CROWN-IBP margin bounds (Zhang et al., "Towards Stable and Efficient Training of Verifiably
Robust Neural Networks", ICLR 2020, arXiv:1906.06316).

Interval bounds give every layer's pre-activation box; one backward pass then carries the
margins' linear function ``C z`` (row j: e_y - e_j) from the output to the input, relaxing each
ReLU by two lines over its box (CROWN, Zhang et al. 2018): above by the chord from (l, 0) to
(u, u), below by y = x when u > -l, else y = 0 (the adaptive choice). The result, a linear
function of the input bounded over the box, is exact for a network without unstable ReLUs and
usually tighter than interval bounds elsewhere. Chains of layers only (Linear, Conv2d,
BatchNorm, ReLU, the normalization layer, reshapes, Dropout and Identity); a layer without a
backward rule here, or a join (a residual add), is refused in one line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from advkit.bounds.graph import (
    BatchStats,
    UnsupportedLayerError,
    _walk,
    model_graph,
    true_class_mask,
)
from advkit.bounds.interval import Interval
from advkit.models.base import Normalize

_RESHAPES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)
_RELU_FUNCTIONS = {F.relu, torch.relu}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, F.dropout}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "contiguous", "clone", "detach", "view_as",
                    "reshape_as"}  # fmt: skip


def unsupported(what: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"CROWN-IBP bounds do not support {what}; they take chains of Linear, Conv2d, BatchNorm, "
        "ReLU, Normalize, Flatten, Dropout and Identity layers: use the interval bounds (ibp)"
    )


def _relu_backward(a: Tensor, bias: Tensor, box: Interval) -> tuple[Tensor, Tensor]:
    """Through a ReLU with input box ``box``, for a lower bound of ``a . relu(x)``."""
    lower, upper = box.lower[:, None], box.upper[:, None]
    active, inactive = lower >= 0, upper <= 0
    unstable = ~(active | inactive)
    chord = upper / (upper - lower).clamp(min=1e-12)
    up_slope = torch.where(active, 1.0, torch.where(unstable, chord, 0.0))
    up_intercept = torch.where(unstable, -chord * lower, 0.0)
    low_slope = torch.where(active | (unstable & (upper > -lower)), 1.0, 0.0)
    positive, negative = a.clamp(min=0), a.clamp(max=0)
    bias = bias + (negative * up_intercept).flatten(2).sum(-1)
    return positive * low_slope + negative * up_slope, bias


def _affine_channels(a: Tensor, bias: Tensor, scale: Tensor, shift: Tensor
                     ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Through ``x -> scale * x + shift`` per channel (dim 2 of ``a``: (N, K, C, ...))."""
    shape = (-1,) + (1,) * (a.dim() - 3)
    scale, shift = scale.view(shape), shift.view(shape)
    return a * scale, bias + (a * shift).flatten(2).sum(-1)


def _module_backward(
    module: nn.Module, name: str, a: Tensor, bias: Tensor, box: Interval,
    stats: BatchStats | None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    n, k = a.shape[:2]
    in_shape = box.lower.shape[1:]
    if isinstance(module, nn.Linear) and a.dim() == 3:
        if module.bias is not None:
            bias = bias + a @ module.bias
        return a @ module.weight, bias
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and a.dim() == 5:
        if module.bias is not None:
            bias = bias + torch.einsum("nkchw,c->nk", a, module.bias)
        height, width = a.shape[-2:]
        natural = [
            (size - 1) * stride - 2 * pad + dilation * (kernel - 1) + 1
            for size, stride, pad, dilation, kernel in zip(
                (height, width), module.stride, module.padding, module.dilation,
                module.kernel_size, strict=True,
            )
        ]  # fmt: skip
        output_padding = tuple(want - got for want, got in zip(in_shape[-2:], natural, strict=True))
        grad = F.conv_transpose2d(
            a.reshape(n * k, *a.shape[2:]), module.weight, None, module.stride, module.padding,
            output_padding, module.groups, module.dilation,
        )  # fmt: skip
        return grad.view(n, k, *in_shape), bias
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.training:
            if stats is None or name not in stats:
                raise unsupported(f"layer {name!r} (BatchNorm) in training mode without statistics")
            mean, var = stats[name]
        else:
            mean, var = module.running_mean, module.running_var
        scale = torch.rsqrt(var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -mean * scale + (module.bias if module.bias is not None else 0)
        return _affine_channels(a, bias, scale, shift)
    if isinstance(module, Normalize):
        return _affine_channels(a, bias, 1 / module.std, -module.mean / module.std)
    if type(module) is nn.ReLU:
        return _relu_backward(a, bias, box)
    if isinstance(module, _RESHAPES):
        return a.reshape(n, k, *in_shape), bias
    raise unsupported(f"layer {name!r} ({type(module).__name__})")


def crown_ibp_margin_lower_bounds(
    model: nn.Module,
    lower: Tensor,
    upper: Tensor,
    labels: Tensor,
    *,
    batch_stats: BatchStats | None = None,
) -> Tensor:
    """Lower bounds (N, K) on the margins ``z_y - z_j`` over the box [lower, upper] by
    CROWN-IBP, 0 at j = y; same contract as ``margin_lower_bounds``. Differentiable."""
    env: dict[fx.Node, object] = {}
    out = _walk(model, Interval(lower, upper), batch_stats, env=env)
    if not isinstance(out, Interval) or out.lower.dim() != 2:
        raise unsupported("a model whose output is not (N, classes) logits")
    classes = out.lower.shape[1]
    mask = true_class_mask(labels, classes)
    # Row j of C: e_y - e_j, one (K, K) matrix per sample.
    a = mask[:, None, :].to(out.lower.dtype) - torch.eye(classes, device=labels.device)[None]
    bias = torch.zeros(a.shape[:2], dtype=a.dtype, device=a.device)
    graph = model_graph(model)
    node = next(n for n in graph.nodes if n.op == "output").args[0]
    while node.op != "placeholder":
        sources = [s for s in node.all_input_nodes if isinstance(env.get(s), Interval)]
        if len(sources) != 1:
            raise unsupported(f"node {node.name} joining {len(sources)} bounded values")
        box = env[sources[0]]
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            a, bias = _module_backward(module, node.target, a, bias, box, batch_stats)
        elif node.op == "call_function" and node.target in _RELU_FUNCTIONS:
            a, bias = _relu_backward(a, bias, box)
        elif (node.op == "call_function" and node.target in _RESHAPE_FUNCTIONS) or (
            node.op == "call_method" and node.target in _RESHAPE_METHODS
        ):
            a = a.reshape(*a.shape[:2], *box.lower.shape[1:])
        elif node.op == "call_method" and node.target == "relu":
            a, bias = _relu_backward(a, bias, box)
        else:
            name = getattr(node.target, "__name__", str(node.target))
            raise unsupported(f"{name} at node {node.name}")
        node = sources[0]
    flat = a.flatten(2)
    margins = (
        bias
        + torch.einsum("nkd,nd->nk", flat.clamp(min=0), lower.flatten(1))
        + torch.einsum("nkd,nd->nk", flat.clamp(max=0), upper.flatten(1))
    )
    return margins.masked_fill(mask, 0.0)
