"""The registry of public attacks, and the checks every one of them runs once per call.

``@public_attack("pgd")`` registers an attack and wraps it so that each call first refuses what
cannot be right: inputs that are not floats in [0, 1] (e.g. pixels in 0..255), labels that are not
class indices, and budgets (``eps``, ``step_size``) that no threat model means (see
:func:`advkit.threat.check_budget`). The checks cost one reduction per call, never one per step;
the attack's own loop stays as lean as before. Labels too large for the model's outputs are only
known once the model has run: the error it raises deep inside is replaced by a clear one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from advkit.attacks._mode import attack_mode
from advkit.errors import InputError
from advkit.registry import Registry
from advkit.threat import THREATS, check_budget, check_unit_range

AttackFn = TypeVar("AttackFn", bound=Callable[..., Any])

#: Public attacks by name; each takes ``(model, inputs, labels, ...)`` and is checked per call.
ATTACKS: Registry[Callable[..., Any]] = Registry("attack")

_BUDGETS = ("eps", "step_size")


def public_attack(name: str) -> Callable[[AttackFn], AttackFn]:
    """Register an attack under ``name`` and check its inputs, labels and budgets on each call.

    The undecorated function stays reachable as ``attack.__wrapped__``, for an attack that
    delegates to another with arguments it has already checked.
    """

    def decorate(attack: AttackFn) -> AttackFn:
        signature = inspect.signature(attack)

        @functools.wraps(attack)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            model, inputs, labels = arguments["model"], arguments["inputs"], arguments["labels"]
            check_attack_inputs(inputs, labels)
            norm = arguments.get("norm", "linf")
            for budget in _BUDGETS if norm in THREATS else ():  # else the attack names the norms
                if arguments.get(budget) is not None:
                    check_budget(arguments[budget], norm, tuple(inputs.shape[1:]), name=budget)
            try:
                return attack(*args, **kwargs)
            except (IndexError, RuntimeError) as error:
                _explain_labels(model, inputs, labels, error)
                raise

        ATTACKS.register(name)(checked)
        return checked  # type: ignore[return-value]

    return decorate


def check_attack_inputs(inputs: Tensor, labels: Tensor) -> None:
    """Inputs (N, ...) floats in [0, 1] and labels (N,) non-negative integers; InputError if not."""
    if not isinstance(inputs, Tensor) or not isinstance(labels, Tensor):
        raise InputError(
            f"inputs and labels must be tensors, got {type(inputs).__name__} and "
            f"{type(labels).__name__}"
        )
    if inputs.dim() < 2 or labels.shape != inputs.shape[:1]:
        raise InputError(
            f"expected inputs (N, C, H, W) and labels (N,), got {tuple(inputs.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputError(f"labels must be integer class indices, got dtype {labels.dtype}")
    check_unit_range(inputs)
    if labels.numel() and int(labels.min()) < 0:
        raise InputError(f"labels must be class indices >= 0, got {int(labels.min())}")


def check_labels_fit(logits: Tensor, labels: Tensor) -> None:
    """Labels must index the model's outputs; InputError naming the largest label otherwise."""
    if labels.numel() == 0:
        return
    num_classes, largest = logits.shape[-1], int(labels.max())
    if largest >= num_classes:
        raise InputError(
            f"labels must be class indices below the model's {num_classes} outputs, got a label "
            f"{largest}: are they from another dataset?"
        )


def _explain_labels(model: nn.Module, inputs: Tensor, labels: Tensor, error: Exception) -> None:
    """After an attack failed: if ``labels`` exceed the model's outputs, say so (else return)."""
    if labels.numel() == 0:
        return
    try:
        with torch.no_grad(), attack_mode(model, train=False):
            logits = model(inputs[:1])
    except Exception:
        return
    try:
        check_labels_fit(logits, labels)
    except InputError as explained:
        raise explained from error
