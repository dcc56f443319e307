"""Interval bound propagation over a model's torch.fx graph.

The model's forward is traced once with ``torch.fx`` (supported layers and torch's own modules
kept as leaves; a model's own modules traced through, so functional code such as ``torch.flatten``,
``F.relu`` or a residual ``x + f(x)`` is bounded too) and the graph is walked with
:class:`~advkit.bounds.interval.Interval` values. Nodes that touch no interval (shape arithmetic,
a shape check) run on concrete values. A layer or function no rule covers is refused with one
line naming it (:class:`UnsupportedLayerError`).

Verification bounds the margins ``z_y - z_j`` rather than the logits: when the output is a final
Linear layer (W, b), the difference matrix C (row j: e_y - e_j) is folded into it, ``C W h + C b``,
and only then bounded (Gowal et al. 2018, "elision"): tighter than ``lower_y - upper_j``, which
forgets that both logits come from the same h.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from advkit.bounds.interval import (
    MONOTONE_MODULES,
    SUPPORTED_LAYERS,
    Interval,
    linear_interval,
    module_interval,
)
from advkit.errors import UserError, one_line
from advkit.models.base import check_input_size

BatchStats = Mapping[str, tuple[Tensor, Tensor]]


class UnsupportedLayerError(UserError, ValueError):
    """A model holding a layer (or an operation) interval bounds have no rule for."""


class UntraceableModelError(UserError, ValueError):
    """A model whose forward torch.fx cannot trace (data-dependent control flow)."""


#: Leaf modules besides torch.nn's own (which fx keeps as leaves): advkit's normalization and
#: subclasses of the layers bounded here (advkit's InputConv2d is a Conv2d).
_LEAVES = (nn.Linear, nn.Conv2d, nn.modules.batchnorm._BatchNorm, *MONOTONE_MODULES)

#: Functions mapping each bound by themselves (monotone non-decreasing, or shape only); their
#: other arguments are constants (kernel size, shape, dims).
_MONOTONE_FUNCTIONS = {
    F.relu, torch.relu, torch.sigmoid, torch.tanh, F.relu6, F.elu, F.softplus, F.hardtanh,
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.flatten, torch.reshape, torch.squeeze,
    torch.unsqueeze, torch.permute, torch.transpose, torch.mean, torch.sum, operator.getitem,
}  # fmt: skip
_MONOTONE_METHODS = {
    "relu", "sigmoid", "tanh", "view", "reshape", "flatten", "contiguous", "unsqueeze",
    "squeeze", "permute", "transpose", "mean", "sum", "view_as", "reshape_as", "clone", "detach",
}  # fmt: skip
_ARITHMETIC = {
    operator.add: operator.add, torch.add: operator.add, "add": operator.add,
    operator.sub: operator.sub, torch.sub: operator.sub, "sub": operator.sub,
    operator.mul: operator.mul, torch.mul: operator.mul, "mul": operator.mul,
    operator.truediv: operator.truediv, torch.div: operator.truediv, "div": operator.truediv,
    operator.neg: operator.neg, torch.neg: operator.neg, "neg": operator.neg,
}  # fmt: skip
_SHAPE_METHODS = {"size", "dim"}
_SHAPE_ATTRIBUTES = {"shape", "dtype", "device", "ndim"}


class _Tracer(fx.Tracer):
    """fx's tracer with advkit's normalization kept whole and its shape check recorded as a call
    (run on concrete shapes when bounding) instead of traced into."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=(check_input_size,))

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, _LEAVES) or super().is_leaf_module(module, qualified_name)


_GRAPHS: weakref.WeakKeyDictionary[nn.Module, fx.Graph] = weakref.WeakKeyDictionary()


def model_graph(model: nn.Module) -> fx.Graph:
    """The model's fx graph (traced once per module object)."""
    graph = _GRAPHS.get(model)
    if graph is None:
        try:
            graph = _Tracer().trace(model)
        except Exception as error:  # fx raises TraceError, TypeError, RuntimeError...
            raise UntraceableModelError(
                f"interval bounds trace the model's forward with torch.fx, which failed "
                f"({type(error).__name__}: {one_line(str(error))}); move data-dependent control "
                f"flow out of forward or write it with the layers listed in advkit's bounds"
            ) from None
        _GRAPHS[model] = graph
    return graph


def unsupported(what: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"interval bounds do not support {what}; supported: {SUPPORTED_LAYERS}. Replace it, or "
        "certify with an attack instead (advkit eval)"
    )


def _load(value: Any, env: dict[fx.Node, Any]) -> Any:
    return fx.node.map_arg(value, lambda node: env[node])


def _has_interval(values: Any) -> bool:
    found = False

    def visit(value: Any) -> Any:
        nonlocal found
        found = found or isinstance(value, Interval)
        return value

    fx.node.map_aggregate(values, visit)
    return found


def _arithmetic(op: Any, args: tuple, kwargs: dict, what: str) -> Interval:
    """Sums and differences of intervals and constants, products and quotients by constants."""
    if kwargs or len(args) > 2:  # torch.add's alpha, out=...: not bounded here
        raise unsupported(f"{what} with arguments {sorted(kwargs)}")
    if op is operator.neg:
        return -args[0]
    a, b = args
    bounded_a, bounded_b = isinstance(a, Interval), isinstance(b, Interval)
    if op is operator.add:
        return a + b if bounded_a else b + a
    if op is operator.sub:
        return a - b if bounded_a else -b + a
    if op is operator.mul and bounded_a != bounded_b:
        return a.scale(b) if bounded_a else b.scale(a)
    if op is operator.truediv and bounded_a and not bounded_b:
        return a.scale(1 / b)
    raise unsupported(f"{what} of bounded values (only sums, and products with constants)")


def _call_function(node: fx.Node, args: tuple, kwargs: dict) -> Any:
    target = node.target
    name = getattr(target, "__name__", str(target))
    if target in _ARITHMETIC:
        return _arithmetic(_ARITHMETIC[target], args, kwargs, f"function {name}")
    box = args[0] if args else None
    if target is F.dropout and isinstance(box, Interval):  # the deterministic network's: identity
        return box
    if target is check_input_size:
        return check_input_size(box.lower, *args[1:], **kwargs)
    if target is getattr and args[1] in _SHAPE_ATTRIBUTES and isinstance(box, Interval):
        return getattr(box.lower, args[1])
    if target is torch.cat:
        parts = args[0]
        lower = [p.lower if isinstance(p, Interval) else p for p in parts]
        upper = [p.upper if isinstance(p, Interval) else p for p in parts]
        rest = args[1:]
        return Interval(torch.cat(lower, *rest, **kwargs), torch.cat(upper, *rest, **kwargs))
    if not isinstance(box, Interval) or _has_interval((args[1:], kwargs)):
        raise unsupported(f"function {name} at node {node.name}")
    if target in _MONOTONE_FUNCTIONS:
        return box.map(lambda x: target(x, *args[1:], **kwargs))
    if target is F.linear:
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        return linear_interval(box, weight, bias)
    if target is F.conv2d:
        weight, bias, rest = args[1], (args[2] if len(args) > 2 else None), args[3:]
        kwargs = dict(kwargs)
        bias = kwargs.pop("bias", bias)
        center = F.conv2d(box.center, weight, bias, *rest, **kwargs)
        return Interval.from_center(
            center, F.conv2d(box.radius, weight.abs(), None, *rest, **kwargs)
        )
    raise unsupported(f"function {name} at node {node.name}")


def _call_method(node: fx.Node, args: tuple, kwargs: dict) -> Any:
    method, box = node.target, args[0]
    if method in _ARITHMETIC:
        return _arithmetic(_ARITHMETIC[method], args, kwargs, f"method .{method}()")
    if method in _SHAPE_METHODS:
        return getattr(box.lower, method)(*args[1:], **kwargs)
    if method in _MONOTONE_METHODS and not _has_interval((args[1:], kwargs)):
        return box.map(lambda x: getattr(x, method)(*args[1:], **kwargs))
    raise unsupported(f"method .{method}() at node {node.name}")


def _call_module(
    model: nn.Module, node: fx.Node, args: tuple, kwargs: dict, stats: BatchStats | None
) -> Any:
    module = model.get_submodule(node.target)
    layer = f"layer {node.target!r} ({type(module).__name__})"
    if len(args) != 1 or kwargs:
        raise unsupported(f"{layer} called with {len(args)} arguments")
    box = args[0]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.training:
            if stats is None or node.target not in stats:
                raise unsupported(
                    f"{layer} in training mode without the clean batch's statistics (call "
                    "model.eval(), or record them with advkit.bounds.recording_batch_stats)"
                )
            return module_interval(module, box, stats[node.target])
        if module.running_mean is None:
            raise unsupported(f"{layer} without running statistics (track_running_stats=False)")
    result = module_interval(module, box)
    if result is None:
        raise unsupported(layer)
    return result


def _walk(
    model: nn.Module,
    box: Interval,
    stats: BatchStats | None,
    until: fx.Node | None = None,
    env: dict[fx.Node, Any] | None = None,
) -> Any:
    """Run the graph on ``box``; the value of ``until``'s first argument when it is reached,
    else the output's. ``env`` (if given) receives every node's value."""
    graph = model_graph(model)
    env = {} if env is None else env
    placeholders = 0
    for node in graph.nodes:
        if node is until:
            return env[node.args[0]]
        if node.op == "placeholder":
            placeholders += 1
            if placeholders > 1:
                raise unsupported(f"a forward with more than one input ({node.name})")
            env[node] = box
            continue
        if node.op == "output":
            return _load(node.args[0], env)
        args, kwargs = _load(node.args, env), _load(node.kwargs, env)
        if node.op == "get_attr":
            value: Any = model
            for part in str(node.target).split("."):
                value = getattr(value, part)
        elif not _has_interval((args, kwargs)):  # constants: run as the model would
            if node.op == "call_module":
                value = model.get_submodule(node.target)(*args, **kwargs)
            elif node.op == "call_method":
                value = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                value = node.target(*args, **kwargs)
        elif node.op == "call_module":
            value = _call_module(model, node, args, kwargs, stats)
        elif node.op == "call_method":
            value = _call_method(node, args, kwargs)
        else:
            value = _call_function(node, args, kwargs)
        env[node] = value
    raise AssertionError("an fx graph always ends in an output node")


def interval_bounds(
    model: nn.Module, lower: Tensor, upper: Tensor, *, batch_stats: BatchStats | None = None
) -> Interval:
    """Bounds on ``model``'s outputs for every input in the box [lower, upper] (same shape as
    the inputs). BatchNorm layers in training mode use ``batch_stats`` (qualified name ->
    (mean, biased variance)); in eval mode their running statistics. Differentiable."""
    out = _walk(model, Interval(lower, upper), batch_stats)
    if not isinstance(out, Interval):
        raise unsupported("a forward whose output is not one tensor computed from its input")
    return out


def _final_linear(model: nn.Module) -> tuple[fx.Node, Tensor, Tensor | None] | None:
    """The node, weight and bias of a Linear layer the model's output comes straight from."""
    graph = model_graph(model)
    output = next(node for node in graph.nodes if node.op == "output")
    last = output.args[0]
    if not isinstance(last, fx.Node) or len(last.args) != 1 or last.kwargs:
        return None
    if last.op == "call_module":
        module = model.get_submodule(last.target)
        if type(module) is nn.Linear:
            return last, module.weight, module.bias
    return None


def margin_lower_bounds(
    model: nn.Module,
    lower: Tensor,
    upper: Tensor,
    labels: Tensor,
    *,
    batch_stats: BatchStats | None = None,
) -> Tensor:
    """Lower bounds (N, K) on the margins ``z_y - z_j`` over the box, 0 at j = y; the input is
    certified iff every other entry is > 0. The final Linear layer is folded with the margins'
    difference matrix when the model ends in one (elision); else ``lower_y - upper_j``.
    ``-margin_lower_bounds`` are Gowal et al.'s worst-case logits. Differentiable."""
    final = _final_linear(model)
    if final is None:
        logits = interval_bounds(model, lower, upper, batch_stats=batch_stats)
        true_lower = logits.lower.gather(1, labels[:, None])
        margins = true_lower - logits.upper
    else:
        node, weight, bias = final
        hidden = _walk(model, Interval(lower, upper), batch_stats, until=node)
        if not isinstance(hidden, Interval):
            raise unsupported("a final layer whose input is not computed from the model's input")
        # Row j of C W is W_y - W_j: one (K, features) matrix per sample.
        diff_weight = weight[labels][:, None, :] - weight[None, :, :]
        center = torch.einsum("nkf,nf->nk", diff_weight, hidden.center.flatten(1))
        radius = torch.einsum("nkf,nf->nk", diff_weight.abs(), hidden.radius.flatten(1))
        margins = center - radius
        if bias is not None:
            margins = margins + (bias[labels][:, None] - bias[None, :])
    # The margin to the true class is exactly 0, whatever the rounding.
    return margins.masked_fill(true_class_mask(labels, margins.shape[1]), 0.0)


def true_class_mask(labels: Tensor, classes: int) -> Tensor:
    """(N, classes) booleans, True at each sample's label (no host sync, unlike one_hot)."""
    return torch.arange(classes, device=labels.device)[None, :] == labels[:, None]
