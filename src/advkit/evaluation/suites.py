"""Named evaluation suites: the attacks an evaluation runs, built for one (eps, norm, seed).

A suite is a list of named attack entries, each a ``functools.partial`` over an attack function so
that ``entry.attack(model, inputs, labels)`` returns adversarial inputs. Clean accuracy and the
per-sample worst case are always computed by ``advkit.evaluation.evaluate`` and are not entries.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import Tensor, nn

from advkit.attacks import apgd, apgd_targeted, fgsm, pgd, square
from advkit.registry import Registry
from advkit.threat import THREATS

AttackFn = Callable[[nn.Module, Tensor, Tensor], Tensor]

#: Norms the Square attack supports; the autoattack suite leaves it out for the others.
SQUARE_NORMS = ("linf", "l2")


@dataclass(frozen=True)
class AttackEntry:
    """One column of the evaluation: ``attack(model, inputs, labels) -> adversarial inputs``."""

    name: str
    attack: AttackFn
    description: str


@dataclass(frozen=True)
class Suite:
    """The attacks of one evaluation.

    Attributes:
        cascade: run the attacks as a worst-case cascade (each one only on the samples every
            earlier one failed to break); the column of an attack is then the robust accuracy
            after it *and all earlier ones*, and the last column is the worst case.
        example_attack: the attack whose adversarial examples the report's image grid shows.
    """

    name: str
    attacks: tuple[AttackEntry, ...]
    cascade: bool = False
    example_attack: str = "pgd20"

    def names(self) -> list[str]:
        return [entry.name for entry in self.attacks]

    def entry(self, name: str) -> AttackEntry:
        for entry in self.attacks:
            if entry.name == name:
                return entry
        raise ValueError(f"suite {self.name!r} has no attack {name!r}; it has {self.names()}")


#: ``builder(eps, norm, seed) -> Suite``; metadata ``description`` (for the CLI help). The attacks
#: draw from torch's global RNG, which ``evaluate`` seeds per chunk from the same seed.
SUITES: Registry[Callable[[float, str, int], Suite]] = Registry("evaluation suite")


def _pgd_entry(name: str, eps: float, norm: str, *, steps: int, **kwargs: object) -> AttackEntry:
    """PGD with random start and step size 2.5 * eps / steps (Madry et al.)."""
    attack = partial(pgd, eps=eps, norm=norm, steps=steps, step_size=2.5 * eps / steps, **kwargs)
    loss = kwargs.get("loss", "ce")
    restarts = kwargs.get("restarts", 1)
    text = f"PGD-{steps}, {loss} loss" + (f", {restarts} restarts" if restarts != 1 else "")
    return AttackEntry(name, attack, text)


def _fgsm_entry(eps: float, norm: str) -> AttackEntry:
    return AttackEntry("fgsm", partial(fgsm, eps=eps, norm=norm), "FGSM, one step of size eps")


@SUITES.register("quick", description="clean and PGD-20 (fast)")
def quick_suite(eps: float, norm: str, seed: int) -> Suite:
    return Suite("quick", (_pgd_entry("pgd20", eps, norm, steps=20),))


@SUITES.register(
    "paper",
    description="the Free-AT paper's columns: FGSM, PGD-20, PGD-100, CW-100, PGD-20 x 10 restarts",
)
def paper_suite(eps: float, norm: str, seed: int) -> Suite:
    attacks = (
        _fgsm_entry(eps, norm),
        _pgd_entry("pgd20", eps, norm, steps=20),
        _pgd_entry("pgd100", eps, norm, steps=100),
        _pgd_entry("cw100", eps, norm, steps=100, loss="cw"),
        _pgd_entry("pgd20x10", eps, norm, steps=20, restarts=10),
    )
    return Suite("paper", attacks)


@SUITES.register(
    "restarts",
    description="PGD-50 with 10 random restarts (the MNIST evaluation of Wong et al. 2020)",
)
def restarts_suite(eps: float, norm: str, seed: int) -> Suite:
    attacks = (_pgd_entry("pgd50x10", eps, norm, steps=50, restarts=10),)
    return Suite("restarts", attacks, example_attack="pgd50x10")


@SUITES.register(
    "autoattack",
    description="AutoAttack-style cascade: APGD-CE, APGD-T (DLR), Square (black-box)",
)
def autoattack_suite(eps: float, norm: str, seed: int) -> Suite:
    attacks = [
        AttackEntry(
            "apgd_ce",
            partial(apgd, eps=eps, norm=norm, steps=100, loss="ce"),
            "APGD, 100 steps, cross-entropy",
        ),
        AttackEntry(
            "apgd_t",
            partial(apgd_targeted, eps=eps, norm=norm, steps=100, num_target_classes=9),
            "targeted APGD, 100 steps, DLR, 9 target classes",
        ),
    ]
    if norm in SQUARE_NORMS:
        attacks.append(
            AttackEntry(
                "square",
                partial(square, eps=eps, norm=norm, queries=5000),
                "Square attack, 5000 queries (black-box)",
            )
        )
    return Suite("autoattack", tuple(attacks), cascade=True, example_attack="apgd_ce")


def attack_params(suite: Suite) -> dict[str, dict[str, Any]]:
    """``{attack: {"function": name, every hyperparameter: value}}``: the keywords the suite
    fixed, with the attack function's defaults for the rest (what a reader needs to rerun it)."""
    params = {}
    for entry in suite.attacks:
        attack = entry.attack
        fixed = dict(attack.keywords) if isinstance(attack, partial) else {}
        function = attack.func if isinstance(attack, partial) else attack
        values: dict[str, Any] = {"function": getattr(function, "__name__", str(function))}
        for name, parameter in inspect.signature(function).parameters.items():
            if name in fixed:
                values[name] = fixed[name]
            elif parameter.default is not inspect.Parameter.empty:
                values[name] = parameter.default
        params[entry.name] = {key: _jsonable(value) for key, value in values.items()}
    return params


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return str(value)


def build_suite(name: str, *, eps: float, norm: str, seed: int = 0) -> Suite:
    """The suite registered as ``name`` for radius ``eps`` (pixel units) in ``norm``."""
    if eps <= 0:
        raise ValueError(
            f"eps must be > 0 to evaluate robustness (pixel units, e.g. 8/255), got {eps}"
        )
    THREATS.get(norm)
    return SUITES.get(name)(eps, norm, seed)
