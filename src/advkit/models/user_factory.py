"""Calling a user's model factory: the arguments it is given and takes, and the checks of what
it returns (an ``nn.Module`` giving (N, num_classes) logits), each failure one line."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from advkit.models.reference import (
    ModelReference,
    ModelReferenceError,
    describe_error,
    parse_reference,
    resolve_factory,
    with_article,
)

#: Arguments advkit gives a user's factory itself, from the data.
DATA_ARGUMENTS = ("num_classes", "in_channels")
#: Shown after a user's factory fails.
_ARG_HINT = "check the factory and its --model-arg values"


def factory_arguments(
    factory: Callable[..., Any], ref: ModelReference, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Check ``kwargs`` against a user factory's signature; returns the data arguments it takes
    (``{"num_classes": ..., ...}`` keys only, values filled in by the caller)."""
    from advkit.models.base import _check_type

    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass the arguments as given
        return {}
    named = {
        name: p
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = [name for name in DATA_ARGUMENTS if name in kwargs]
    if given:
        raise ModelReferenceError(
            f"--model-arg {given[0]} is set by advkit from the data (num_classes: the dataset's "
            "classes, in_channels: its channels): drop it"
        )
    options = [name for name in named if name not in DATA_ARGUMENTS]
    unknown = [] if takes_any else sorted(set(kwargs) - set(named))
    if unknown:
        raise ModelReferenceError(
            f"model {ref.text!r} does not take the options {unknown}; it accepts "
            f"{options or 'none'}"
        )
    for key, value in kwargs.items():
        _check_type(ref.text, named.get(key), value)
    needed = [
        name
        for name, p in named.items()
        if p.default is inspect.Parameter.empty and name not in (*DATA_ARGUMENTS, *kwargs)
    ]
    if needed:
        raise ModelReferenceError(
            f"model {ref.text!r} needs {', '.join(needed)}: give each as --model-arg NAME=VALUE"
        )
    return {name: None for name in DATA_ARGUMENTS if name in named or takes_any}


def check_factory(reference: str, kwargs: Mapping[str, Any]) -> None:
    """Resolve a reference and check ``kwargs`` against its factory, calling nothing (what
    ``--nproc`` checks once before starting the workers)."""
    ref = parse_reference(reference)
    factory = resolve_factory(ref)
    if not ref.registered:
        factory_arguments(factory, ref, kwargs)


def build_user_model(
    reference: str | ModelReference, num_classes: int, in_channels: int, kwargs: Mapping[str, Any]
) -> nn.Module:
    """Call a file or module reference's factory (see the module docstring) and check that it
    returned a module."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    factory = resolve_factory(ref)
    data = factory_arguments(factory, ref, kwargs)
    values = {"num_classes": num_classes, "in_channels": in_channels}
    arguments = {**{name: values[name] for name in data}, **kwargs}
    try:
        model = factory(**arguments)
    except Exception as error:
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items()) or "no arguments"
        path = ref.path if ref.kind == "file" else None
        raise ModelReferenceError(
            f"model {ref.text!r} raised {describe_error(error, path)} when called with {shown}: "
            f"{_ARG_HINT}"
        ) from error
    if not isinstance(model, nn.Module):
        raise ModelReferenceError(
            f"model {ref.text!r} returned {with_article(type(model).__name__)}, not a "
            "torch.nn.Module: return the network itself (advkit puts the normalization in front "
            "of it)"
        )
    return model


def output_count(model: nn.Module, input_shape: tuple[int, ...], what: str) -> int:
    """How many logits ``model`` gives per image: a batch of two random (C, H, W) images run
    through it in eval mode, without gradients and with the caller's RNG untouched; a
    ModelReferenceError if it fails or returns anything but a (2, K) tensor."""
    device = next((t.device for t in (*model.parameters(), *model.buffers())), None)
    device = device or torch.device("cpu")
    shown = "x".join(str(n) for n in input_shape)
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            inputs = torch.rand(2, *input_shape, device=device)
            with torch.no_grad():
                model.eval()
                output = model(inputs)
    except Exception as error:
        raise ModelReferenceError(
            f"model {what!r} fails on a batch of 2 {shown} images, (C, H, W) as in the data "
            f"({describe_error(error)}): give it data of the size and channels it takes, or make "
            f"it take (N, {', '.join(str(n) for n in input_shape)}) inputs in [0, 1]"
        ) from error
    finally:
        model.train(was_training)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    if shape is None or len(shape) != 2 or shape[0] != 2:
        got = f"shape {shape}" if shape is not None else with_article(type(output).__name__)
        raise ModelReferenceError(
            f"model {what!r} returns {got} for a batch of 2 {shown} images; expected logits of "
            "shape (2, K), one per class"
        )
    return shape[1]


def check_output(
    model: nn.Module,
    input_shape: tuple[int, ...],
    num_classes: int,
    what: str,
    *,
    at_least: bool = False,
) -> None:
    """Refuse a model whose output on (C, H, W) images (:func:`output_count`) is not
    (N, num_classes) logits (``at_least``: (N, K) with K >= num_classes)."""
    count = output_count(model, input_shape, what)
    if count == num_classes or (at_least and count > num_classes):
        return
    shown = "x".join(str(n) for n in input_shape)
    raise ModelReferenceError(
        f"model {what!r} returns shape (2, {count}) for a batch of 2 {shown} images; expected "
        f"logits of shape (2, {num_classes}), one per class: make it output {num_classes} values "
        "per image (a factory that takes num_classes gets the dataset's)"
    )
